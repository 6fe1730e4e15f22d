"""Measured TFLite sizes of CsiNet (real TensorFlow, real converter, real TFMOT), each
part in its own fresh process as `phymem compress --measure` runs it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from estimator.compression import model_bytes
from estimator.families import csinet, detnet
from estimator.layers import leaves, resolve
from profilers.compression import measure_in_subprocess, tfmot_available

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def _need_tfmot() -> None:
    """The compress extra is optional, in CI too: tf-keras installs the full `tensorflow`
    wheel over `tensorflow-cpu`, which the profiler's allocator traces were taken with."""
    if not tfmot_available():
        pytest.skip(
            "tf-keras / tensorflow-model-optimization not installed "
            "(pip install -e '.[compress]' to run these)"
        )


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


def test_a_custom_layer_is_refused_by_name() -> None:
    _need_tfmot()
    with pytest.raises(RuntimeError, match="custom layer"):
        measure_in_subprocess(detnet(layers=1), prune=0.5, timeout_s=600)


def test_cli_measure_adds_the_measured_file_beside_the_estimate() -> None:
    from tests.test_compression import _phymem

    args = ("--family", "csinet", "--gamma", "1/64", "--quantize", "dynamic")
    result = _phymem("compress", *args, "--measure", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["measured_file"] == data["measured"]["tflite"]["int8"]
    assert data["size_bytes"]["dense"] - 4096 < data["measured_file"]["bytes"]
    assert data["measured_file"]["bytes"] < data["size_bytes"]["dense"] + 64 * 1024


def test_cli_measure_refuses_pruning_a_custom_layer_before_building() -> None:
    from tests.test_compression import _phymem

    args = ("--family", "detnet", "--layers", "2", "--prune", "0.5", "--measure")
    result = _phymem("compress", *args)
    assert result.returncode == 2
    assert "detnet_layer_0" in result.stderr and len(result.stderr.strip().splitlines()) == 1
