"""The API and the CLI gate must start without TensorFlow or Ray (only the worker loads them)."""

import json
import subprocess
import sys

HEAVY = ("tensorflow", "keras", "ray", "torch")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""


def loaded_after(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_api_app_imports_no_framework():
    assert loaded_after("import app.main") == []


def test_estimator_and_gate_import_no_framework(tmp_path):
    spec = tmp_path / "bae.yaml"
    spec.write_text("family: bae\nk: 6\nnt: 4\n")
    body = (
        "import estimator.engine, estimator.search, estimator.sweep, estimator.framework\n"
        "from app.gate_cli import main\n"
        f"main([{str(spec)!r}, '--device', 'a100-80gb'])"
    )
    assert loaded_after(body) == []


def test_cli_help_imports_no_framework():
    assert loaded_after("import app.cli") == []
