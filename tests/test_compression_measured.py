"""Measured TFLite sizes of CsiNet and DetNet (real TensorFlow, real converter, real
TFMOT), each part in its own fresh process as `phymem compress --measure` runs it: the
TFMOT part with the compress environment's interpreter (`make compress-env`)."""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from typing import Any

import pytest

from estimator.compression import model_bytes
from estimator.families import csinet, detnet
from estimator.layers import leaves, resolve
from profilers.compression import (
    COMPRESS_PYTHON,
    COMPRESS_VENV,
    compress_python,
    measure_in_subprocess,
    tfmot_available,
)
from tests.conftest import in_ci

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]
DETNET_SMALL = detnet(layers=2)


def _need_tfmot() -> None:
    """The compress environment is a venv of its own (tf-keras installs the full
    `tensorflow` wheel); `make test` makes it, so in CI its absence fails."""
    if not tfmot_available():
        reason = (
            f"no compress environment at {compress_python()} (`make compress-env`, or set "
            f"{COMPRESS_PYTHON})"
        )
        if in_ci():
            pytest.fail(f"compress environment missing while CI is set: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    _need_tfmot()
    return measure_in_subprocess(
        csinet("1/64"), prune=0.5, cluster=16, latency_runs=5, timeout_s=600
    )


def test_tflite_files_hold_the_estimated_weights_plus_a_bounded_container(
    measured: dict[str, Any],
) -> None:
    layers = resolve(csinet("1/64"))
    # the converter folds batch normalisation into the preceding convolution
    folded = sum(layer.params for layer in leaves(layers) if layer.spec.type == "batch_norm")
    for fmt, value_bytes in (("fp32", 4), ("fp16", 2), ("int8", 4)):
        size = measured["tflite"][fmt]["bytes"]
        weights = model_bytes(layers, fmt) - value_bytes * folded  # type: ignore[arg-type]
        assert weights <= size <= weights + 64 * 1024, (fmt, size, weights)
        assert measured["tflite"][fmt]["gzip_bytes"] < size


def test_latency_is_measured_with_and_without_xnnpack(measured: dict[str, Any]) -> None:
    for fmt in ("fp32", "fp16", "int8"):
        latency = measured["tflite"][fmt]["latency_s"]
        assert set(latency) == {"xnnpack", "builtin"}
        assert all(0 < seconds < 1 for seconds in latency.values()), latency
    sparse = measured["pruned"]["int8_sparse"]  # XNNPack may refuse it: then it says why
    assert 0 < sparse["latency_s"]["builtin"] < 1
    assert "xnnpack" in sparse["latency_s"] or "xnnpack" in sparse["latency_error"]


def test_pruning_zeroes_half_of_each_kernel_and_gzip_sees_it(measured: dict[str, Any]) -> None:
    pruned = measured["pruned"]
    assert pruned["kernel_sparsity_measured"] == pytest.approx(0.5, abs=1e-3)
    # dense storage keeps the zeros; gzip (and the sparse encoding) removes them
    dense = measured["tflite"]["fp32"]
    assert pruned["fp32"]["gzip_bytes"] < 0.7 * dense["gzip_bytes"]
    assert pruned["fp32_sparse"]["bytes"] < 0.8 * dense["bytes"]


def test_clustering_leaves_at_most_c_values_per_kernel(measured: dict[str, Any]) -> None:
    clustered = measured["clustered"]
    assert 2 <= clustered["distinct_values_max"] <= 16
    assert clustered["fp32"]["gzip_bytes"] < 0.3 * measured["tflite"]["fp32"]["gzip_bytes"]


@pytest.fixture(scope="module")
def detnet_measured() -> dict[str, Any]:
    _need_tfmot()
    return measure_in_subprocess(DETNET_SMALL, prune=0.5, cluster=16, timeout_s=600)


def test_detnet_kernels_are_pruned_to_the_sparsity_asked(detnet_measured: dict[str, Any]) -> None:
    # w1, w2, w3 of both layers (16000, 3200, 6400 weights: half of each is exact)
    pruned = detnet_measured["pruned"]
    assert pruned["kernel_sparsity_measured"] == pytest.approx(0.5, abs=1e-3)
    layers = resolve(DETNET_SMALL)
    # gzip squeezes the zeros of the dense file to about the bitmap estimate; the sparse
    # file is TFLite's CSR encoding plus the graph of two layers
    bitmap = model_bytes(layers, sparsity=0.5, storage="bitmap")
    assert 0.9 * bitmap < pruned["fp32"]["gzip_bytes"] < 1.1 * bitmap
    csr = model_bytes(layers, sparsity=0.5, storage="sparse")
    assert csr <= pruned["fp32_sparse"]["bytes"] <= csr + 32 * 1024
    assert pruned["fp32_sparse"]["bytes"] < 0.7 * detnet_measured["tflite"]["fp32"]["bytes"]


def test_detnet_kernels_are_clustered_to_at_most_c_values(
    detnet_measured: dict[str, Any],
) -> None:
    clustered = detnet_measured["clustered"]
    assert 2 <= clustered["distinct_values_max"] <= 16
    dense = detnet_measured["tflite"]["fp32"]["gzip_bytes"]
    assert clustered["fp32"]["gzip_bytes"] < 0.4 * dense
    versions = detnet_measured["environment"]["tfmot"]
    assert versions["tf_keras"] and versions["tensorflow_model_optimization"]


def test_the_compress_environment_is_the_one_its_setting_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from profilers.allocator import REPO_ROOT

    monkeypatch.delenv(COMPRESS_PYTHON, raising=False)
    default = REPO_ROOT / COMPRESS_VENV / "bin" / "python"
    assert compress_python() == (str(default) if default.exists() else sys.executable)
    monkeypatch.setenv(COMPRESS_PYTHON, sys.executable)
    here = all(find_spec(name) for name in ("tf_keras", "tensorflow_model_optimization"))
    assert tfmot_available() is here
    monkeypatch.setenv(COMPRESS_PYTHON, "/nonexistent/bin/python")
    assert tfmot_available() is False
    with pytest.raises(RuntimeError, match=COMPRESS_PYTHON):
        measure_in_subprocess(DETNET_SMALL, prune=0.5, timeout_s=600)


def test_cli_measure_adds_the_measured_file_beside_the_estimate() -> None:
    from tests.test_compression import _phymem

    args = ("--family", "csinet", "--gamma", "1/64", "--quantize", "dynamic")
    result = _phymem("compress", *args, "--measure", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["measured_file"] == data["measured"]["tflite"]["int8"]
    assert data["size_bytes"]["dense"] - 4096 < data["measured_file"]["bytes"]
    assert data["measured_file"]["bytes"] < data["size_bytes"]["dense"] + 64 * 1024


def test_cli_measure_without_the_compress_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_compression import _phymem

    monkeypatch.setenv(COMPRESS_PYTHON, "/nonexistent/bin/python")
    args = ("--family", "detnet", "--layers", "2", "--prune", "0.5", "--measure")
    result = _phymem("compress", *args)
    assert result.returncode == 2
    assert COMPRESS_PYTHON in result.stderr and len(result.stderr.strip().splitlines()) == 1
