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


def loaded_after(body: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    code = PROBE.format(body=body, heavy=heavy)
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


def test_gate_on_clean_specs_imports_neither_pydantic_nor_yaml(tmp_path):
    """Importing either costs the gate a large part of its start-up (benchmarks/RESULTS.md)."""
    flat = tmp_path / "bae.yaml"
    flat.write_text("# a family spec\nfamily: bae\nk: 6\nnt: 4\n")
    generic = tmp_path / "model.json"
    generic.write_text(
        '{"input_kind": "real", "input_size": 4, "layers": [{"type": "dense", "units": 2}]}'
    )
    body = (
        "from app.gate_cli import main\n"
        f"assert main([{str(flat)!r}, {str(generic)!r}, '--device', 'a100-80gb']) == 0"
    )
    assert loaded_after(body, heavy=("pydantic", "pydantic_core", "yaml")) == []


def test_gate_falls_back_to_pydantic_for_the_error(tmp_path, capsys):
    from app.gate_cli import main

    spec = tmp_path / "bad.yaml"
    spec.write_text("family: bae\nk: 0\nnt: 4\n")
    assert main([str(spec), "--device", "a100-80gb"]) == 2
    assert "k: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_the_spec_modules_import_each_other_only_at_the_top():
    """spec_base <- layers <- records <- families, spec: no import hidden in a function."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "estimator"
    hidden = []
    for name in ("spec_base", "layers", "records", "families", "spec"):
        tree = ast.parse((root / f"{name}.py").read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("estimator"):
                    hidden.append(f"{name}.{function.name}: from {node.module}")
    assert hidden == []
