"""Training jobs end to end: a real API server and a real `phymem worker` on a SQLite file.

A train job goes in over HTTP, trains in a fresh process under the worker's Ray task, and
ends with BER rows, a model file, a loss history and a measurement paired with its
estimate. A second job's training process is killed mid-run (SIGKILL): the job goes back
to the queue, its next attempt resumes from the last checkpoint, and its final weights are
those of the uninterrupted run with the same seed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import worker_helpers
from worker_helpers import base_env, running_service

pytest.importorskip("ray")
pytest.importorskip("tensorflow")

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow, pytest.mark.timeout(600)]
API_KEY = "train-key-0123456789"
SPEC = {"family": "tanh-bae", "k": 2, "nt": 2, "ht": 16, "hr": 32, "batch": 64}
STEPS = 600
EVERY = 100
TRAIN = {
    "channel": "cross",
    "train_ebn0_db": 7,
    "steps": STEPS,
    "lr": 0.01,
    "seed": 3,
    "checkpoint_every": EVERY,
}
EVALUATE = {"ebn0_db": "0:4:2", "target_errors": 50, "max_bits": 20_000}


class Service(worker_helpers.Service):
    def submit(self, body: dict[str, Any]) -> Any:  # type: ignore[override]
        status, _, job = super().submit(body)
        assert status == 202, job
        return job

    def wait(self, job_id: int, timeout_s: float = 400.0) -> Any:
        return super().wait(job_id, timeout_s)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("train-e2e")
    with running_service(root, API_KEY, kind=Service) as running:
        yield running  # type: ignore[misc]


def _weights(path: Path) -> dict[str, Any]:
    import h5py
    import numpy as np

    found: dict[str, Any] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, item: (
                found.__setitem__(name, np.asarray(item))
                if isinstance(item, h5py.Dataset)
                else None
            )
        )
    return found


def test_killed_training_resumes_from_its_checkpoint(service: Service) -> None:
    import numpy as np

    body = {"kind": "train", "spec": SPEC, "train": TRAIN, "evaluate": EVALUATE}
    reference = service.submit(body)
    killed = service.submit(body)

    # Live progress from the job row, then SIGKILL the training process past a checkpoint.
    seen: list[tuple[str | None, int | None]] = []
    deadline = time.monotonic() + 300
    while True:
        job = service.get(f"/v1/jobs/{killed['id']}")
        seen.append((job["phase"], job["step"]))
        if job["phase"] == "train" and (job["step"] or 0) >= 2 * EVERY + EVERY // 2:
            break
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline, seen[-5:]
        time.sleep(0.1)
    assert job["total_steps"] == STEPS and job["step"] < STEPS, job
    assert job["loss"] is not None and job["attempts"] == 1
    pid = int((service.root / "jobs" / str(killed["id"]) / "train.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert any(phase == "train" and 0 < (step or 0) < STEPS for phase, step in seen)

    done = service.wait(killed["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2  # the kill cost one attempt
    result = done["result"]
    resumed = result["resumed_from_step"]
    assert resumed % EVERY == 0 and 2 * EVERY <= resumed < STEPS, result
    assert result["steps"] == STEPS == done["step"]
    assert result["steps_this_attempt"] == STEPS - resumed
    history = service.get(f"/v1/jobs/{killed['id']}/history")["loss"]
    assert [point["step"] for point in history] == list(range(1, STEPS + 1))

    ref = service.wait(reference["id"])
    assert ref["status"] == "succeeded" and ref["attempts"] == 1, ref
    assert ref["result"]["resumed_from_step"] == 0
    ref_history = service.get(f"/v1/jobs/{reference['id']}/history")["loss"]
    # The resumed run saw the same data and state as the uninterrupted one.
    assert [p["loss"] for p in history] == pytest.approx([p["loss"] for p in ref_history])
    mine = _weights(service.root / "jobs" / str(killed["id"]) / "final.weights.h5")
    theirs = _weights(service.root / "jobs" / str(reference["id"]) / "final.weights.h5")
    assert mine.keys() == theirs.keys() and len(mine) >= 10
    for name, value in mine.items():
        np.testing.assert_allclose(value, theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)

    _check_results(service, ref)


def _check_results(service: Service, job: dict[str, Any]) -> None:
    job_id = job["id"]
    assert job["phase"] == "evaluate" and job["progress"] == 1.0
    assert job["ebn0_db"] in (0.0, 2.0, 4.0)
    result = job["result"]
    assert result["final_loss"] == pytest.approx(job["loss"])
    assert result["final_loss"] < 0.3  # binary cross-entropy of a model that learned

    rows = service.get(f"/v1/jobs/{job_id}/ber")["rows"]
    by_detector: dict[str, list[Any]] = {}
    for row in rows:
        by_detector.setdefault(row["detector"], []).append(row)
        assert row["ci_low"] <= row["ber"] <= row["ci_high"]
        assert row["bits"] >= 1 and row["errors"] == row["bit_errors"]
    assert set(by_detector) == {"tanh-bae", "zf", "mmse", "ml"}
    for curve in by_detector.values():
        assert [row["ebn0_db"] for row in curve] == [0.0, 2.0, 4.0]
        assert curve[0]["ber"] > curve[-1]["ber"]  # falls with Eb/N0
    for row in by_detector["tanh-bae"]:
        assert 0.5 < row["tx_energy"] <= 1.0 + 1e-9  # peak energy 1 per antenna
    for row in by_detector["zf"]:
        assert row["tx_energy"] == pytest.approx(1.0)

    # The memory pair: the training's allocator peak beside the estimate of spec and batch.
    pairs = service.get(f"/v1/measurements?job_id={job_id}")["items"]
    assert len(pairs) == 1, pairs
    pair = pairs[0]
    assert pair["status"] == "ok" and pair["measured_bytes"] > 0
    assert pair["estimate_bytes"] == result["estimate_bytes"] > 0
    assert pair["measured_bytes"] == result["measured_bytes"]
    assert pair["batch"] == SPEC["batch"] and pair["family"] == "tanh-bae"

    status, headers, data = _raw(f"{service.base}/v1/jobs/{job_id}/model")
    assert status == 200
    assert headers.get("content-type") == "application/octet-stream"
    _check_model_loads(data, service.root / "downloaded.keras")


def _check_model_loads(data: bytes, path: Path) -> None:
    import subprocess
    import sys

    from worker_helpers import REPO

    path.write_bytes(data)
    code = (
        "import sys\n"
        "from app.worker.training import load_model\n"
        "m = load_model(sys.argv[1])\n"
        "print(m.name, [l.name for l in m.layers if 'channel' in l.name])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=REPO,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "phymem_train ['mimo_channel']" in done.stdout


def _raw(url: str) -> tuple[int, dict[str, str], bytes]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        data = response.read()
        assert data[:2] == b"PK"  # a .keras file is a zip archive
        return response.status, dict(response.headers), data


def test_train_submit_waits_with_progress_and_prints_json(service: Service) -> None:
    import json

    command = ["train", "--family", "bae", "--k", "2"]
    command += ["--nt", "2", "--ht", "16", "--hr", "32", "--batch", "32", "--steps", "60"]
    command += ["--channel", "rayleigh", "--train-ebn0", "5,10", "--eval-ebn0", "0:2:2"]
    command += ["--target-errors", "20", "--max-bits", "4000", "--baselines", "mmse"]
    done = service.submit_cli("app.cli", *command, timeout_s=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["status"] == "ok" and out["job_status"] == "succeeded"
    assert out["train"]["channel"] == "rayleigh" and out["train"]["train_ebn0_db"] == [5.0, 10.0]
    assert out["spec"]["batch"] == 32 and out["steps"] == 60
    assert out["final_loss"] > 0 and out["measured_bytes"] > 0 and out["estimate_bytes"] > 0
    assert {row["detector"] for row in out["ber"]} == {"bae", "mmse"}
    assert set(out["ber"][0]) == {
        "detector",
        "ebn0_db",
        "ber",
        "ci_low",
        "ci_high",
        "bits",
        "errors",
    }
    # The bar on stderr ends at the job row's last step of its total.
    assert "60/60" in done.stderr


# --- CsiNet and DetNet ---------------------------------------------------------------------

CSINET_TRAIN = {"steps": 150, "batch": 32, "lr": 0.003, "seed": 1, "checkpoint_every": 50}
CSINET_EVALUATE = {"test_samples": 300}


def test_csinet_job_reports_nmse_and_rho_that_training_improved(service: Service) -> None:
    import math

    from estimator.families import csinet

    spec = csinet("1/4", batch=32).model_dump(mode="json")
    body = {
        "kind": "train",
        "spec": spec,
        "mode": "paper",  # framework mode has no traced model of conv2d yet
        "train": CSINET_TRAIN,
        "evaluate": CSINET_EVALUATE,
    }
    job = service.wait(service.submit(body)["id"])
    assert job["status"] == "succeeded", job
    assert job["params"]["evaluate"]["baselines"] == []
    assert service.get(f"/v1/jobs/{job['id']}/ber")["rows"] == []
    metrics = {m["name"]: m for m in service.get(f"/v1/jobs/{job['id']}/metrics")["metrics"]}
    assert set(metrics) == {"nmse_db", "rho"}
    nmse, rho = metrics["nmse_db"], metrics["rho"]
    for row in (nmse, rho):
        assert math.isfinite(row["value"]) and math.isfinite(row["detail"]["untrained"])
        assert row["ebn0_db"] is None and row["detail"]["samples"] == 300
    # 150 steps: far from the paper's NMSE, but better than the untrained network.
    assert nmse["value"] < nmse["detail"]["untrained"] - 0.3, nmse
    assert 0.0 <= rho["value"] <= 1.0 and 0.0 <= rho["detail"]["untrained"] <= 1.0
    history = service.get(f"/v1/jobs/{job['id']}/history")["loss"]
    assert len(history) == 150 and history[-1]["loss"] < history[0]["loss"]


def test_detnet_submitted_from_the_cli_reports_ber_at_12_db(service: Service) -> None:
    import json
    import subprocess
    import sys

    from worker_helpers import REPO

    command = [sys.executable, "-m", "app.cli", "train", "--family", "detnet", "--nt", "4"]
    command += ["--nr", "8", "--layers", "3", "--batch", "64", "--steps", "200", "--lr", "0.003"]
    command += ["--eval-ebn0", "6,12", "--target-errors", "100", "--max-bits", "200000"]
    command += ["--submit", "--wait", "--json", "--url", service.base]
    done = subprocess.run(
        command,
        cwd=REPO,
        env=base_env(PHYMEM_API_KEY=API_KEY),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["status"] == "ok" and out["train"]["receivers"] == 8
    assert out["train"]["train_ebn0_db"] == [0.0, 15.0]  # the paper's training SNRs
    assert {row["detector"] for row in out["ber"]} == {"detnet", "zf", "mmse"}
    (ber,) = out["metrics"]
    assert ber["name"] == "ber" and ber["ebn0_db"] == 12.0
    assert 0.0 < ber["value"] < 0.5 and ber["value"] < ber["detail"]["untrained"], ber
    assert ber["detail"]["ci_low"] <= ber["value"] <= ber["detail"]["ci_high"]
    # The classical detectors at the same point, from the same seeded stream.
    assert 0.0 < ber["detail"]["mmse_ber"] < 0.5 and 0.0 < ber["detail"]["zf_ber"] < 0.5
    stored = service.get(f"/v1/jobs/{out['job_id']}/metrics")["metrics"]
    assert stored == out["metrics"]
