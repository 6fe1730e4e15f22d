"""`phymem ber` as a user runs it: a real subprocess, its JSON rows and its exit codes."""

import json
import subprocess
import sys

import pytest

PHYMEM = [sys.executable, "-m", "app.cli"]
ROW_KEYS = {
    "detector",
    "ebn0_db",
    "ber",
    "ci_low",
    "ci_high",
    "bits",
    "errors",
    "bit_errors",
    "symbols",
    "symbol_errors",
    "ser",
    "messages",
    "message_errors",
    "bler",
    "tx_energy",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PHYMEM, *args], capture_output=True, text=True, timeout=120)


def test_ber_json_rows_and_same_seed_same_output():
    args = ["ber", "--detector", "zf", "--k", "2", "--nt", "2", "--channel", "cross"]
    args += ["--cross", "0.3", "--ebn0", "0:10:5", "--target-errors", "200", "--json"]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["constellation"] == "QPSK" and out["channel"] == "cross" and out["cross"] == 0.3
    assert out["ebn0_db"] == [0.0, 5.0, 10.0]
    rows = out["rows"]
    assert [r["ebn0_db"] for r in rows] == [0.0, 5.0, 10.0]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["detector"] == "zf" and row["errors"] == row["bit_errors"] >= 200
        assert row["ci_low"] <= row["ber"] <= row["ci_high"]
        assert row["ber"] == row["errors"] / row["bits"]
    assert rows[0]["ber"] > rows[1]["ber"] > rows[2]["ber"] > 0
    assert run(*args).stdout == result.stdout


def test_ber_human_output_and_budget():
    result = run("ber", "--detector", "ml", "--nt", "2", "--ebn0", "0,40", "--max-bits", "1e4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "ML, QPSK, 2x2 awgn, seed 0"
    assert len(lines) == 4  # title, header, 0 dB, 40 dB (no errors: the sweep stops there)
    assert lines[3].split()[0] == "40.00" and lines[3].split()[5] == "0"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--detector", "mlse"], "--detector: must be one of zf, mmse, ml"),
        (["--k", "two"], "--k: expected an integer"),
        (["--nt", "0"], "--nt: must be at least 1"),
        (["--channel", "cross", "--nr", "3"], "--nr: the cross channel has N_R = N_T = 2"),
        (["--channel", "fading"], "--channel: must be one of awgn, cross, rayleigh"),
        (["--ebn0", "10:0:1"], "--ebn0: expected 'start:stop:step'"),
        (["--max-bits", "1.5"], "--max-bits: expected an integer"),
        (["--cross", "nan"], "--cross: expected a finite number"),
        (["--detector", "ml", "--nt", "9"], "--max-candidates: ML detection with k = 2, N_T = 9"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag_exit_2(args, needle):
    result = run("ber", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phymem: error: ") and needle in lines[0]
    assert result.stdout == ""


def test_ber_command_loads_no_framework():
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from app.cli import app\n"
        "result = CliRunner().invoke(app, ['ber', '--ebn0', '4', '--detector', 'ml', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = {'tensorflow', 'keras', 'ray', 'torch'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
