"""The pre-commit hook and the GitHub Action run the real gate command."""

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_pre_commit_hook_runs_the_gate(tmp_path):
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "phymem-gate" and hook["entry"] == "phymem gate"
    spec = tmp_path / "ae.yaml"
    spec.write_text("family: ae\nk: 6\nnt: 4\n")
    # pre-commit appends the staged file names to entry + args
    command = [*shlex.split(hook["entry"]), *hook["args"], str(spec)]
    phymem = Path(sys.executable).with_name("phymem")
    result = subprocess.run([str(phymem), *command[1:]], capture_output=True, text=True)
    assert result.returncode == 1 and "exceeds" in result.stdout


def test_action_gates_with_the_cli():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    scripts = " ".join(step.get("run", "") for step in action["runs"]["steps"])
    assert "phymem gate" in scripts and "--format junit" in scripts
    assert set(action["inputs"]) >= {"specs", "device", "vram", "mode"}
