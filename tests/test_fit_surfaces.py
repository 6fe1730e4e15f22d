"""One fit rule on every surface: a max batch from one passes the gate of the other two.

The CLI (`phymem max-batch`, `phymem gate`, real subprocesses) and the API
(POST /v1/max-batch, POST /v1/gate) judge a named device by its memory and its prior
calibration, on the `upper` basis by default; the A100 has a prior in paper mode, so the
paper-mode cases check that the calibration is applied the same way everywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PHYMEM = [sys.executable, "-m", "app.cli"]
SPEC = {"family": "bae", "k": 2, "nt": 2, "ht": 32, "hr": 64}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PHYMEM, *args], capture_output=True, text=True, timeout=120)


def cli_max_batch(device: str, mode: str, basis: str) -> int:
    flags = [f"--{key}={value}" for key, value in SPEC.items()]
    done = cli("max-batch", *flags, "--device", device, "--mode", mode, "--basis", basis, "--json")
    assert done.returncode == 0, done.stderr
    answer: int = json.loads(done.stdout)["max_batch"]
    return answer


def cli_gate(tmp: Path, batch: int, device: str, mode: str, basis: str) -> bool:
    path = tmp / f"spec-{batch}.json"
    path.write_text(json.dumps({**SPEC, "batch": batch}))
    done = cli("gate", str(path), "--device", device, "--mode", mode, "--basis", basis)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def api_gate(client: Any, batch: int, device: str, mode: str, basis: str) -> bool:
    body = {
        "device": device,
        "mode": mode,
        "basis": basis,
        "specs": [{"spec": {**SPEC, "batch": batch}}],
    }
    response = client.post("/v1/gate", json=body)
    assert response.status_code == 200, response.text
    fits: bool = response.json()["fits"]
    return fits


@pytest.mark.parametrize(
    ("device", "mode", "basis"),
    [
        ("a100-80gb", "paper", "upper"),  # a prior calibration applies
        ("l4-24gb", "framework", "upper"),
        ("l4-24gb", "framework", "expected"),
    ],
)
def test_max_batch_from_one_surface_passes_the_gates_of_the_others(
    client: Any, tmp_path: Path, device: str, mode: str, basis: str
) -> None:
    response = client.post(
        "/v1/max-batch", json={"device": device, "mode": mode, "basis": basis, "spec": SPEC}
    )
    if basis == "expected" and response.status_code == 422:
        assert response.json()["errors"][0]["field"] == "basis"  # too far to check one by one
        return
    assert response.status_code == 200, response.text
    from_api = response.json()
    assert from_api["basis"] == basis
    from_cli = cli_max_batch(device, mode, basis)
    assert from_cli == from_api["max_batch"] > 0
    assert from_api["total_bytes"] <= from_api["vram_bytes"]
    if mode == "paper":
        assert from_api["calibration"] == "prior (0 pairs)"
    batch = from_cli
    assert cli_gate(tmp_path, batch, device, mode, basis)
    assert api_gate(client, batch, device, mode, basis)
    if basis == "upper":  # the upper bound never falls, so the next batch fails everywhere
        assert not cli_gate(tmp_path, batch + 1, device, mode, basis)
        assert not api_gate(client, batch + 1, device, mode, basis)


def test_upper_basis_is_the_default_and_never_below_the_expected(client: Any) -> None:
    body = {"vram": "80GiB", "specs": [{"spec": {**SPEC, "batch": 300}}]}
    default = client.post("/v1/gate", json=body).json()
    expected = client.post("/v1/gate", json={**body, "basis": "expected"}).json()
    assert default["basis"] == "upper" and expected["basis"] == "expected"
    upper_verdict, peak_verdict = default["verdicts"][0], expected["verdicts"][0]
    assert upper_verdict["total_bytes"] == upper_verdict["upper_bytes"]
    assert peak_verdict["total_bytes"] == peak_verdict["peak_bytes"]
    assert upper_verdict["upper_bytes"] >= upper_verdict["peak_bytes"]
    bad = client.post("/v1/gate", json={**body, "basis": "median"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "basis"
    done = cli(
        "max-batch",
        "--family",
        "bae",
        "--k",
        "2",
        "--nt",
        "2",
        "--vram",
        "1GiB",
        "--basis",
        "median",
    )
    assert done.returncode == 2 and "--basis" in done.stderr
