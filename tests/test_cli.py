"""The `phymem` CLI as a user runs it: a real subprocess, real files, real exit codes."""

import json
import subprocess
import sys
from xml.etree import ElementTree

import pytest

from estimator.engine import MODES, estimate
from estimator.spec import FamilySpec

PHYMEM = [sys.executable, "-m", "app.cli"]
PAPER = ("--mode", "paper", "--json")


def run(*args, check_rc=None):
    result = subprocess.run([*PHYMEM, *args], capture_output=True, text=True, timeout=120)
    if check_rc is not None:
        assert result.returncode == check_rc, result.stderr + result.stdout
    return result


@pytest.fixture
def specs(tmp_path):
    ae = tmp_path / "ae.yaml"
    ae.write_text("family: ae\nk: 6\nnt: 4\nbatch: 2048\n")
    bae = tmp_path / "bae.json"
    bae.write_text(json.dumps({"family": "bae", "k": 6, "nt": 4}))
    return ae, bae


def test_estimate_json_has_exact_totals():
    out = run(
        "estimate",
        "--family",
        "ae",
        "--k",
        "6",
        "--nt",
        "4",
        "--batch",
        "2048",
        "--precision",
        "fp32",
        "--optimizer",
        "adam",
        "--mode",
        "paper",
        "--json",
        check_rc=0,
    ).stdout
    data = json.loads(out)
    assert data["total_bytes"] == 859_923_299_269
    assert round(data["total_gib"], 1) == 800.9
    assert set(data["breakdown"]) == {
        "weights",
        "gradients",
        "optimizer",
        "activations",
        "ephemeral",
        "resident",
    }
    assert len(data["layers"]) >= 14


def test_estimate_table_for_people():
    args = ("estimate", "--family", "bae", "--k", "2", "--nt", "2")
    out = run(*args, "--mode", "paper", check_rc=0).stdout
    assert "Breakdown" in out and "0.7410" in out
    framework = run(*args, check_rc=0).stdout  # the default mode
    assert "framework mode" in framework and "Breakdown" in framework


def test_estimate_from_spec_file_with_generic_layers(tmp_path):
    spec = tmp_path / "mlp.yaml"
    spec.write_text(
        "input_kind: real\ninput_size: 8\nbatch: 32\nloss: mse\nlayers:\n"
        "  - {type: dense, units: 4, activation: relu}\n"
        "  - {type: layer_norm}\n"
        "  - {type: dense, units: 2}\n"
    )
    data = json.loads(run("estimate", str(spec), "--json", check_rc=0).stdout)
    layers = [row for row in data["layers"] if row["index"] is not None]
    assert [row["params"] for row in layers] == [8 * 4 + 4, 8, 4 * 2 + 2]


def test_table2_json_matches_the_paper():
    rows = json.loads(run("table2", "--json", check_rc=0).stdout)
    assert len(rows) == 72
    assert {r["column"] for r in rows} == {"ae", "ae_embedding_mixed", "bae"}
    bad = [r for r in rows if not r["matches"] and not r["known_misprint"]]
    assert bad == []
    headline = next(r for r in rows if (r["column"], r["k"], r["nt"]) == ("ae", 6, 4))
    assert headline["paper"] == "800.9" and round(headline["gib"], 1) == 800.9


def test_gate_exit_codes(specs):
    ae, bae = specs
    failing = run("gate", str(ae), str(bae), "--device", "a100-80gb", "--mode", "paper")
    assert failing.returncode == 1
    # 800.9 GiB by the paper's equations, plus the A100's prior calibration (0.7 GB)
    assert "FAIL" in failing.stdout and "801.5 GiB" in failing.stdout
    assert run("gate", str(bae), "--vram", "80GiB").returncode == 0
    framework = run(  # the default mode; the expected peak instead of the upper bound
        "gate", str(ae), str(bae), "--device", "a100-80gb", "--basis", "expected"
    )
    assert framework.returncode == 1 and "1072 GiB (expected peak)" in framework.stdout


def test_gate_junit_lists_each_spec(specs):
    ae, bae = specs
    result = run("gate", str(ae), str(bae), "--device", "h100-80gb", "--format", "junit")
    suite = ElementTree.fromstring(result.stdout.split("?>", 1)[1])
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite if c.find("failure") is not None]
    assert failed == [str(ae)]


def test_gate_json(specs):
    _, bae = specs
    data = json.loads(run("gate", str(bae), "--device", "l4-24gb", "--format", "json").stdout)
    assert data["fits"] is True and data["specs"][0]["total_bytes"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["estimate", "--family", "ae", "--k", "0", "--nt", "4"], "k"),
        (["estimate", "--family", "nope", "--k", "2", "--nt", "4"], "family"),
        (["estimate", "--family", "ae", "--k", "2", "--nt", "4", "--mode", "magic"], "--mode"),
        (["gate", "missing.yaml", "--vram", "1GB"], "missing.yaml"),
        (["gate", "x.yaml"], "--vram or --device"),
        (["max-batch", "--family", "bae", "--k", "2", "--nt", "2", "--vram", "lots"], "--vram"),
        (["max-batch", "--family", "bae", "--k", "2", "--nt", "2", "--device", "tpu"], "tpu"),
        (["estimate", "--family", "ae", "--k", "64", "--nt", "256"], "k*nt"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_bad_layer_names_the_layer(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "input_kind: real\ninput_size: 6\nlayers:\n"
        "  - {type: dense, units: 5}\n  - {type: complex_channel, nr: 2}\n"
    )
    result = run("estimate", str(spec))
    assert result.returncode == 2 and "layers[1]" in result.stderr


def _answer(command, *flags):
    return json.loads(run(command, *flags, "--json", check_rc=0).stdout)


@pytest.mark.parametrize("mode", MODES)
def test_inverse_questions_answer_at_the_boundary_of_their_mode(mode):
    """Each answer fits by that mode's upper_bytes (the default basis; in paper mode the
    total itself) and one more does not."""
    vram = 80 * 2**30

    def total(family="ae", batch=2048, **fields):
        return estimate(FamilySpec(family=family, batch=batch, **fields), mode).upper_bytes

    batch = _answer("max-batch", "--family", "bae", "--k", "6", "--nt", "4", "--vram", "80GiB",
                    "--mode", mode)  # fmt: skip
    nt = _answer("max-nt", "--family", "ae", "--k", "2", "--vram", "80GiB", "--mode", mode)
    k = _answer("max-k", "--family", "ae", "--nt", "4", "--vram", "80GiB", "--mode", mode)
    assert batch["mode"] == nt["mode"] == k["mode"] == mode
    b, nt, k = batch["max_batch"], nt["max_nt"], k["max_k"]
    assert total("bae", batch=b, k=6, nt=4) <= vram < total("bae", batch=b + 1, k=6, nt=4)
    assert total(k=2, nt=nt) <= vram < total(k=2, nt=nt + 1)
    assert total(k=k, nt=4) <= vram < total(k=k + 1, nt=4)
    assert k == 5  # in both modes the headline AE (k=6, N_T=4) does not fit 80 GiB


def test_inverse_questions_default_to_the_framework_mode():
    assert _answer("max-k", "--family", "ae", "--nt", "4", "--vram", "80GiB")["mode"] == (
        "framework"
    )


def test_the_worker_module_runs_without_importing_itself_or_the_main_cli():
    """`python -m app.cli_worker` (how `serve --with-worker` starts a worker) loads it once."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "app.cli_worker", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "worker" in result.stdout and "profile" in result.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "app.cli_options" in imported  # the probe sees this process's imports
    assert "app.cli_worker" not in imported and "app.cli" not in imported
