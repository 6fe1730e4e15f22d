"""Measurements with a quantity: training peaks, model sizes and latencies stored beside the
estimate they test, read back over HTTP, and kept out of the calibration.

The model sizes come from real TensorFlow conversions (plain `tf.lite.TFLiteConverter`,
in the dev environment, so CI runs this); latency needs the LiteRT interpreter of the
optional compress extra and skips without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.db.models import Measurement
from app.db.session import make_engine, make_sessionmaker
from app.services import calibration, measurements
from app.services.compression import latency_rows, size_pairs, store_measured
from estimator.calibration import Pair, fit
from estimator.compression import model_bytes
from estimator.families import csinet
from estimator.layers import resolve
from profilers.compression import measure_in_subprocess

SPEC = csinet("1/64")


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    """CsiNet 1/64 converted to float32, float16 and dynamic-range TFLite files."""
    return measure_in_subprocess(SPEC, timeout_s=600)


def _session(db_url: str) -> Session:
    return make_sessionmaker(make_engine(db_url))()


@pytest.mark.tensorflow
def test_each_measured_file_is_stored_beside_its_recipe_estimate(
    db_url: str, measured: dict[str, Any]
) -> None:
    with _session(db_url) as session:
        stored = store_measured(session, SPEC, measured)
        items = measurements.list_measurements(session, quantity="model_size")
    layers = resolve(SPEC)
    expected = {
        "tflite/fp32": model_bytes(layers, "fp32"),
        "tflite/fp16": model_bytes(layers, "fp16"),
        "tflite/int8": model_bytes(layers, "int8", scales="channel"),
    }
    assert [item["id"] for item in items] == stored["measurement_ids"]
    assert {item["detail"]["file"]: item["estimated_value"] for item in items} == expected
    for item in items:
        fmt = item["detail"]["file"].split("/")[1]
        assert item["measured_value"] == measured["tflite"][fmt]["bytes"]
        assert (item["quantity"], item["unit"], item["status"]) == ("model_size", "bytes", "ok")
        assert item["estimate_id"] == stored["estimate_id"] and item["mode"] == "paper"
        gap = (item["estimated_value"] - item["measured_value"]) / item["measured_value"]
        assert item["error_pct"] == pytest.approx(100 * gap, abs=1e-3)
        # the file holds the weights (less batch norm, folded) plus a small container
        assert -0.05 < gap < 0.02, item
        assert item["framework_versions"]["tensorflow"]


def test_size_pairs_follow_the_recipe_each_file_stores() -> None:
    layers = resolve(SPEC)
    file = {"bytes": 1000, "gzip_bytes": 700}
    found = {
        "tflite": {"fp32": file},
        "pruned": {"sparsity": 0.5, "fp32": file, "int8_sparse": file},
        "clustered": {"clusters": 16, "int8": file},
    }
    rows = {row["detail"]["file"]: row for row in size_pairs(layers, found)}
    assert set(rows) == {"tflite/fp32", "pruned/fp32", "pruned/int8_sparse", "clustered/int8"}
    assert rows["pruned/fp32"]["estimated_value"] == model_bytes(
        layers, sparsity=0.5, storage="bitmap"
    )
    assert rows["pruned/fp32"]["measured_value"] == 700  # gzip of the dense file
    assert rows["pruned/int8_sparse"]["estimated_value"] == model_bytes(
        layers, "int8", scales="channel", sparsity=0.5, storage="sparse"
    )
    assert rows["pruned/int8_sparse"]["measured_value"] == 1000
    assert rows["clustered/int8"]["estimated_value"] == model_bytes(
        layers, "int8", scales="channel", clusters=16
    )


def test_latency_rows_are_microseconds_without_an_estimate() -> None:
    found = {"tflite": {"fp32": {"bytes": 1, "latency_s": {"xnnpack": 0.000123456789}}}}
    (row,) = latency_rows(found, runs=7)
    assert row == {
        "quantity": "latency",
        "measured_value": "123.457",
        "estimated_value": None,
        "detail": {"file": "tflite/fp32", "delegate": "xnnpack", "runs": 7},
    }


def _seed_mixed(client: Any, db_url: str, device: str) -> None:
    """Two training-peak pairs 1 MB above their estimates, and a model size and a latency
    of the same spec whose numbers (if read as training peaks) would move the fit."""
    with _session(db_url) as session:
        for k in (2, 4):
            body = client.post("/v1/estimates", json={"family": "bae", "k": k, "nt": 2}).json()
            total = body["total_bytes"]
            session.add(
                Measurement(
                    estimate_id=body["id"],
                    device=device,
                    measured_peak_bytes=str(total + 10**6),
                    status="ok",
                )
            )
        for quantity, value in (("model_size", "99"), ("latency", "12.5")):
            session.add(
                Measurement(
                    estimate_id=body["id"],
                    device=device,
                    quantity=quantity,
                    measured_value=value,
                    estimated_value="100" if quantity == "model_size" else None,
                    measured_peak_bytes=str(total * 50),  # a writer's mistake, ignored
                    status="ok",
                )
            )
        session.commit()


def test_calibration_fits_training_peaks_only(client: Any, db_url: str) -> None:
    _seed_mixed(client, db_url, "a100-80gb")
    with _session(db_url) as session:
        pairs = calibration.pairs_for(session, "a100-80gb", "framework")
    assert len(pairs) == 2 and {p.quantity for p in pairs} == {"training_peak"}
    fitted = client.get("/v1/devices/a100-80gb/calibration", params={"mode": "framework"})
    assert (fitted.json()["pairs"], fitted.json()["offset_bytes"]) == (2, 10**6)
    size = Pair(100, 99 * 10**9, "model_size")
    assert fit("cpu", "paper", [*pairs, size]) == fit("cpu", "paper", pairs)


def test_api_lists_and_filters_by_quantity(client: Any, db_url: str) -> None:
    _seed_mixed(client, db_url, "cpu")
    every = client.get("/v1/measurements").json()["items"]
    assert [item["quantity"] for item in every] == [
        "training_peak",
        "training_peak",
        "model_size",
        "latency",
    ]
    (size,) = client.get("/v1/measurements", params={"quantity": "model_size"}).json()["items"]
    assert (size["estimated_value"], size["measured_value"], size["unit"]) == (100, 99, "bytes")
    assert size["error_pct"] == pytest.approx(1.010, abs=1e-3)
    (latency,) = client.get("/v1/measurements", params={"quantity": "latency"}).json()["items"]
    assert (latency["measured_value"], latency["unit"], latency["error_pct"]) == (12.5, "us", None)
    peaks = client.get("/v1/measurements", params={"quantity": "training_peak"}).json()
    assert all(item["measured_value"] == item["measured_bytes"] for item in peaks["items"])
    bad = client.get("/v1/measurements", params={"quantity": "flops"})
    assert bad.status_code == 422 and "quantity" in bad.text
    summary = client.get("/v1/measurements/summary", params={"device": "cpu"}).json()
    assert (summary["quantity"], summary["count"], summary["errors"]) == ("training_peak", 2, 2)
    sizes = client.get(
        "/v1/measurements/summary", params={"device": "cpu", "quantity": "model_size"}
    ).json()
    assert (sizes["count"], sizes["max_abs_error_pct"]) == (1, pytest.approx(1.010, abs=1e-3))
    bad = client.get("/v1/measurements/summary", params={"quantity": "x"})
    assert bad.status_code == 422 and "quantity" in bad.text


def _phymem(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "app.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.tensorflow
def test_cli_compress_measure_store(tmp_path: Path) -> None:
    from app.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = os.environ | {"PHYMEM_DATABASE_URL": url}
    spec = tmp_path / "csinet.yaml"
    spec.write_text("family: csinet\ngamma: 1/64\n")
    refused = _phymem("compress", str(spec), "--store", env=env)
    assert refused.returncode == 2 and "--store" in refused.stderr
    unmigrated = _phymem("compress", str(spec), "--measure", "--store", env=env)
    assert unmigrated.returncode == 2 and "phymem db upgrade" in unmigrated.stderr
    upgrade(url)
    runs = ("--latency-runs", "3") if find_spec("ai_edge_litert") else ()
    done = _phymem("compress", str(spec), "--measure", "--store", *runs, "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    with _session(url) as session:
        items = measurements.list_measurements(session)
    assert [item["id"] for item in items] == report["stored"]["measurement_ids"]
    sizes = [item for item in items if item["quantity"] == "model_size"]
    assert {item["measured_value"] for item in sizes} == {
        report["measured"]["tflite"][fmt]["bytes"] for fmt in ("fp32", "fp16", "int8")
    }
    latencies = [item for item in items if item["quantity"] == "latency"]
    assert len(latencies) == (6 if runs else 0)  # 3 files x XNNPack on and off
    assert all(0 < item["measured_value"] < 10**6 for item in latencies)
