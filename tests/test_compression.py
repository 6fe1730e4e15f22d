"""The seed papers' layers, families, sizes and MACs, checked against hand computations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from estimator.compression import csr_bytes, model_bytes, size_table, weight_tensors
from estimator.engine import estimate
from estimator.errors import InvalidSpec
from estimator.families import csinet, detnet
from estimator.flops import flops_summary, macs_per_layer
from estimator.layers import resolve
from estimator.spec import ModelSpec


def _model(layers: list[dict[str, Any]], input_size: int = 32) -> ModelSpec:
    return ModelSpec.model_validate(
        {"input_kind": "real", "input_size": input_size, "layers": layers}
    )


def _error(layers: list[dict[str, Any]], input_size: int = 32) -> str:
    with pytest.raises(ValueError) as caught:
        _model(layers, input_size)
    return str(caught.value)


def test_conv_shapes_and_params_follow_keras() -> None:
    model = _model(
        [
            {"type": "reshape", "target": [4, 4, 2]},
            {"type": "conv2d", "filters": 8, "kernel": 3},  # same: 4x4x8
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": "valid"},  # 2x2x3
            {"type": "conv2d", "filters": 5, "kernel": 1, "stride": 2, "use_bias": False},
            {"type": "flatten"},
            {"type": "dense", "units": 2},
        ]
    )
    rows = resolve(model)
    assert [r.out_shape for r in rows] == [(4, 4, 2), (4, 4, 8), (2, 2, 3), (1, 1, 5), (5,), (2,)]
    assert [r.params for r in rows] == [0, 3 * 3 * 2 * 8 + 8, 3 * 3 * 8 * 3 + 3, 3 * 5, 0, 12]


def test_residual_block_sums_its_layers_and_keeps_the_shape() -> None:
    block = {
        "type": "residual",
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel": 3},
            {"type": "batch_norm"},
            {"type": "leaky_relu", "alpha": 0.3},
            {"type": "conv2d", "filters": 2, "kernel": 3},
        ],
    }
    rows = resolve(_model([{"type": "reshape", "target": [4, 4, 2]}, block]))
    assert rows[1].out_shape == (4, 4, 2)
    assert rows[1].trainable_params == (72 + 4) + 8 + (72 + 2)
    assert rows[1].non_trainable_params == 8


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([{"type": "reshape", "target": [5, 5]}], "layers[0] (reshape): target: [5, 5] holds 25"),
        (
            [{"type": "reshape", "target": [4, 4, 2]}, {"type": "dense", "units": 3}],
            "layers[1] (dense): needs a flat input, got shape [4, 4, 2]",
        ),
        ([{"type": "conv2d", "filters": 2}], "layers[0] (conv2d): needs a (height, width"),
        (
            [
                {"type": "reshape", "target": [2, 2, 8]},
                {"type": "conv2d", "filters": 2, "kernel": 3, "padding": "valid"},
            ],
            "layers[1] (conv2d): kernel 3 is larger than the input side 2",
        ),
        (
            [
                {"type": "reshape", "target": [4, 4, 2]},
                {"type": "residual", "layers": [{"type": "conv2d", "filters": 3}]},
            ],
            "layers[1] (residual): the block's output shape [4, 4, 3] differs",
        ),
        (
            [
                {"type": "reshape", "target": [4, 4, 2]},
                {
                    "type": "residual",
                    "layers": [{"type": "flatten"}, {"type": "dense", "units": 1}],
                },
            ],
            "layers[1] (residual): ",
        ),
        (
            [{"type": "detnet_layer", "transmitters": 2, "hidden": 4, "v": 4}],
            "K + K*K + K + v = 12",
        ),
    ],
)
def test_bad_layers_are_refused_naming_the_layer(
    layers: list[dict[str, Any]], message: str
) -> None:
    assert message in _error(layers)


def test_nested_errors_name_the_inner_layer() -> None:
    text = _error(
        [
            {"type": "reshape", "target": [4, 4, 2]},
            {"type": "residual", "layers": [{"type": "dense", "units": 1}]},
        ]
    )
    assert "layers[1] (residual): layers[0] (dense): needs a flat input" in text


def test_csinet_parameters_by_hand() -> None:
    refine = (3 * 3 * 2 * 8 + 8) + 32 + (3 * 3 * 8 * 16 + 16) + 64 + (3 * 3 * 16 * 2 + 2) + 8
    for gamma, m in (("1/4", 512), ("1/16", 128), ("1/32", 64), ("1/64", 32)):
        expected = 38 + 8 + (2048 * m + m) + (m * 2048 + 2048) + 2 * refine + 38
        assert sum(r.params for r in resolve(csinet(gamma))) == expected
    with pytest.raises(ValueError, match="gamma"):
        csinet("1/8")


def test_detnet_parameters_by_hand() -> None:
    k, z, v = 20, 160, 40
    per_layer = (3 * k + v) * z + z + z * k + k + z * v + v + 1
    assert per_layer == 25821  # the paper: "each layer of DetNet corresponds to 26,000"
    assert sum(r.params for r in resolve(detnet())) == 90 * per_layer
    assert sum(r.params for r in resolve(detnet(layers=50))) == 50 * per_layer


def test_weight_tensors_add_up_to_the_parameters() -> None:
    for model in (csinet("1/16"), detnet(4, 6, 3)):
        layers = resolve(model)
        assert sum(t.size for t in weight_tensors(layers)) == sum(r.params for r in layers)


def test_sizes_by_hand_for_one_dense_layer() -> None:
    layers = resolve(_model([{"type": "dense", "units": 32}], input_size=64))
    kernel, bias = 64 * 32, 32 * 4  # 2048 weights; bias stays float32
    assert size_table(layers) == {
        "fp32": 4 * kernel + bias,
        "fp16": 2 * kernel + 2 * 32,
        "int8_per_tensor": kernel + 12 + bias,
        "int8_per_channel": kernel + 12 * 32 + bias,
    }
    assert model_bytes(layers, sparsity=0.5) == 4 * kernel + bias  # zeros kept
    # CSR: 1024 values, 33 row offsets of 2 bytes (up to 1024), 1024 column indices of 1 byte
    assert model_bytes(layers, sparsity=0.5, storage="sparse") == 4096 + 66 + 1024 + bias
    assert model_bytes(layers, sparsity=0.5, storage="bitmap") == 4096 + 256 + bias
    assert model_bytes(layers, "int8", sparsity=0.5, storage="bitmap") == 1024 + 256 + 12 + bias
    assert model_bytes(layers, clusters=16) == 2048 * 4 // 8 + 16 * 4 + bias
    assert model_bytes(layers, "int8", clusters=16) == 1024 + 16 + 12 + bias
    assert model_bytes(layers, clusters=32) == 2048 * 5 // 8 + 32 * 4 + bias


def test_small_kernels_are_not_quantized() -> None:
    layers = resolve(_model([{"type": "dense", "units": 3}], input_size=4))
    assert model_bytes(layers, "int8") == model_bytes(layers, "fp32") == (12 + 3) * 4


def test_csr_index_widths() -> None:
    # offsets up to 600 and columns up to 299 need uint16; 70000 of each need int32
    assert csr_bytes(size=300 * 2, rows=2, nonzero=600, value_bytes=1) == 600 + 3 * 2 + 600 * 2
    assert csr_bytes(size=70000, rows=1, nonzero=70000, value_bytes=1) == 70000 + 2 * 4 + 70000 * 4
    assert csr_bytes(size=100, rows=1, nonzero=10, value_bytes=4) == 40 + 2 * 1 + 10 * 1


def test_bad_recipes_are_refused() -> None:
    layers = resolve(_model([{"type": "dense", "units": 3}], input_size=4))
    with pytest.raises(ValueError, match="sparsity"):
        model_bytes(layers, sparsity=1.0)
    with pytest.raises(ValueError, match="clusters"):
        model_bytes(layers, clusters=1)


def test_macs_by_hand() -> None:
    rows = resolve(
        _model(
            [
                {"type": "reshape", "target": [4, 4, 2]},
                {"type": "conv2d", "filters": 8, "kernel": 3},
                {"type": "flatten"},
                {"type": "dense", "units": 2},
            ]
        )
    )
    assert [r.macs for r in macs_per_layer(rows)] == [0, 4 * 4 * 8 * 9 * 2, 0, 128 * 2]
    summary = flops_summary(resolve(detnet()))
    assert summary["macs"] == 90 * (400 + 100 * 160 + 160 * 20 + 160 * 40)
    assert summary["flops"] == 2 * summary["macs"]


def test_paper_mode_counts_the_new_layers_and_framework_mode_refuses_mixed_detnet() -> None:
    model = csinet("1/4")
    result = estimate(model, "paper")
    assert result.breakdown.weights == 4 * sum(r.params for r in resolve(model))
    conv_values = 2048 + 2 * (32 * 32 * (8 + 16 + 2)) + 2048  # encoder, 2 RefineNets, last
    dense_values = 512 + 2048
    assert result.breakdown.activations == 4 * 4 * (conv_values + dense_values + 16) * 200
    framework = estimate(model, "framework")  # conv2d etc.: estimator/conv_steps.py
    assert framework.breakdown.weights >= result.breakdown.weights
    mixed = detnet(4, 6, 2, batch=8).model_copy(update={"precision": "mixed"})
    with pytest.raises(InvalidSpec, match="detnet_layer"):
        estimate(mixed, "framework")


def _phymem(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "app.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_cli_estimate_adds_params_sizes_and_flops() -> None:
    result = _phymem(
        "estimate", "--family", "csinet", "--gamma", "1/16", "--mode", "paper", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    layers = resolve(csinet("1/16"))
    assert data["params"] == sum(r.params for r in layers)
    assert data["size_bytes"] == size_table(layers)
    assert data["flops"] == flops_summary(layers)["flops"]
    assert data["total_bytes"] == estimate(csinet("1/16"), "paper").total_bytes
    result = _phymem(
        "estimate", "--family", "detnet", "--layers", "50", "--mode", "paper", "--json"
    )
    assert json.loads(result.stdout)["params"] == 50 * 25821


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "detnet", "--layers", "0"], "layers: Input should be"),
        (["--family", "csinet", "--gamma", "1/8", "--mode", "paper"], "gamma: Input should be"),
        (["--family", "detnet", "--layers", "0", "--mode", "paper"], "layers: Input should be"),
        (
            ["--family", "csinet", "--gamma", "1/4", "--k", "2", "--mode", "paper"],
            "k: Extra inputs",
        ),
    ],
)
def test_cli_refusals_exit_2_naming_the_field(args: list[str], message: str) -> None:
    result = _phymem("estimate", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_cli_compress_estimates_one_recipe(tmp_path: Path) -> None:
    spec = tmp_path / "csinet.yaml"
    spec.write_text("family: csinet\ngamma: 1/4\n")
    args = ("compress", str(spec), "--prune", "0.5", "--quantize", "dynamic", "--json")
    result = _phymem(*args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    layers = resolve(csinet("1/4"))
    assert data["size_bytes"]["bitmap"] == model_bytes(
        layers, "int8", sparsity=0.5, storage="bitmap"
    )
    assert data["fp32_bytes"] == 4 * sum(r.params for r in layers)
    result = _phymem("compress", str(spec), "--quantize", "dynamic", "--cluster", "16", "--json")
    assert json.loads(result.stdout)["size_bytes"] == {
        "dense": model_bytes(layers, "int8", clusters=16)
    }
    bad = _phymem("compress", str(spec), "--prune", "1.5")
    assert bad.returncode == 2 and "--prune" in bad.stderr


def test_records_accept_the_new_layers_as_pydantic_does() -> None:
    from estimator.records import accept

    for model in (csinet("1/32"), detnet(2, 3, 2)):
        data = model.model_dump()
        fast = accept(data)
        assert fast is not None
        assert fast.model_dump() == ModelSpec.model_validate(data).model_dump()


def test_api_estimates_csinet_in_both_modes_and_refuses_mixed_detnet(client: Any) -> None:
    spec = csinet("1/64").model_dump()
    for mode in ("paper", "framework"):
        answer = client.post("/v1/estimates", json={**spec, "mode": mode})
        assert answer.status_code == 200, answer.text
        assert answer.json()["total_bytes"] == estimate(csinet("1/64"), mode).total_bytes
    mixed = detnet(4, 6, 2, batch=8).model_copy(update={"precision": "mixed"})
    framework = client.post("/v1/estimates", json={**mixed.model_dump()})
    assert framework.status_code == 422, framework.text
    assert "no traced mixed-precision model of detnet_layer" in framework.text


def test_inference_memory_at_batch_one_by_hand() -> None:
    from estimator.compression import inference_bytes, peak_activation_values

    layers = resolve(_model([{"type": "dense", "units": 32}], input_size=64))
    assert inference_bytes(layers) == 4 * (2048 + 32) + 4 * (64 + 32)
    assert inference_bytes(layers, "int8") == (2048 + 12 + 128) + 4 * (64 + 32)
    block = {
        "type": "residual",
        "layers": [{"type": "conv2d", "filters": 8, "kernel": 3}, {"type": "conv2d", "filters": 2}],
    }
    rows = resolve(_model([{"type": "reshape", "target": [4, 4, 2]}, block]))
    # the block input (32) stays alive while its first conv maps 32 values to 128
    assert peak_activation_values(rows) == 32 + 32 + 128


def test_residual_blocks_count_towards_the_layer_bound() -> None:
    block = {"type": "residual", "layers": [{"type": "leaky_relu"}] * 600}
    message = _error([block, block])
    assert "layers: 1200 layers in all" in message


def test_group_pruning_by_hand() -> None:
    from estimator.compression import group_pruned_bytes
    from estimator.flops import structured_macs

    layers = resolve(_model([{"type": "dense", "units": 32}], input_size=64))
    # a quarter of the 64 inputs removed: a 48 x 32 kernel and a 64-bit mask of kept inputs
    assert group_pruned_bytes(layers, 0.25) == 48 * 32 * 4 + 8 + 32 * 4
    assert group_pruned_bytes(layers, 0.25, "int8") == 48 * 32 + 12 + 8 + 32 * 4
    assert structured_macs(layers, 0.25) == 48 * 32
    assert structured_macs(layers, 0.0) == flops_summary(layers)["macs"]
    k, z, v = 20, 160, 40
    det = resolve(detnet(layers=1))
    assert structured_macs(det, 0.5) == k * k + 50 * z + 80 * (k + v)
    assert structured_macs(det, 0.0) == flops_summary(det)["macs"] == 26000


def test_group_then_element_pruning_by_hand() -> None:
    from estimator.compression import group_pruned_bytes, recipe_report
    from estimator.flops import structured_macs

    layers = resolve(_model([{"type": "dense", "units": 32}], input_size=64))
    # 16 of 64 inputs removed: a 48 x 32 kernel (1536 weights), then half of it zeroed;
    # plus the 8-byte mask of inputs kept and the 32 float32 biases
    rest = 8 + 32 * 4
    assert group_pruned_bytes(layers, 0.25, sparsity=0.5) == 1536 * 4 + rest  # zeros kept
    bitmap = 768 * 4 + 1536 // 8 + rest
    assert group_pruned_bytes(layers, 0.25, sparsity=0.5, storage="bitmap") == bitmap
    # CSR: 33 uint16 row offsets (768 nonzeros), one uint8 column index (of 48) per nonzero
    csr = 768 * 4 + 33 * 2 + 768 + rest
    assert group_pruned_bytes(layers, 0.25, sparsity=0.5, storage="sparse") == csr
    int8 = {"dense": 1536 + 12 + rest, "sparse": 768 + 66 + 768 + 12 + rest}
    int8["bitmap"] = 768 + 192 + 12 + rest
    report = recipe_report(layers, prune=0.5, quantize="dynamic", group_prune=0.25)
    grouped: Any = report["group_pruned"]
    assert grouped["size_bytes"] == int8
    assert (grouped["removed"], grouped["prune"]) == (0.25, 0.5)
    assert (grouped["macs"], grouped["macs_nonzero"]) == (1536, 768)
    # per-channel scales: 32 of them; clustered to 16: 4-bit indices and 16 int8 centroids
    channel = recipe_report(
        layers, prune=0.5, quantize="dynamic", scales="channel", group_prune=0.25
    )
    assert channel["group_pruned"]["size_bytes"]["bitmap"] == 768 + 192 + 32 * 12 + rest  # type: ignore[index]
    clustered = recipe_report(layers, quantize="dynamic", cluster=16, group_prune=0.25)
    assert clustered["group_pruned"]["size_bytes"] == {"dense": 768 + 16 + 12 + rest}  # type: ignore[index]
    # without element pruning the combined recipe is group pruning alone
    assert group_pruned_bytes(layers, 0.25, "int8") == int8["dense"]
    assert structured_macs(layers, 0.25, 0.0) == 1536


def test_group_then_element_pruning_counts_conv_positions_and_detnet_kernels() -> None:
    from estimator.compression import group_pruned_bytes
    from estimator.flops import structured_macs

    conv = resolve(
        _model([{"type": "reshape", "target": [4, 4, 2]}, {"type": "conv2d", "filters": 8}])
    )
    # one of the 2 input channels kept: 3x3x1x8 = 72 weights, 36 nonzero, at 16 positions
    assert structured_macs(conv, 0.5) == 16 * 72
    assert structured_macs(conv, 0.5, 0.5) == 16 * 36
    bitmap = 36 * 4 + 72 // 8 + 1 + 8 * 4
    assert group_pruned_bytes(conv, 0.5, sparsity=0.5, storage="bitmap") == bitmap
    det = resolve(detnet(layers=1))
    # W1 keeps 50 of its 100 inputs (8000 weights), W2 and W3 80 of their 160 (1600, 3200)
    assert structured_macs(det, 0.5) == 400 + 8000 + 1600 + 3200
    assert structured_macs(det, 0.5, 0.5) == 400 + 4000 + 800 + 1600
    kernels = (4000 * 4 + 1000 + 13) + (800 * 4 + 200 + 20) + (1600 * 4 + 400 + 20)
    biases = (160 + 20 + 40 + 1) * 4
    assert group_pruned_bytes(det, 0.5, sparsity=0.5, storage="bitmap") == kernels + biases


def test_cli_compress_takes_group_and_element_pruning_together(tmp_path: Path) -> None:
    spec = tmp_path / "dense.yaml"
    spec.write_text("input_kind: real\ninput_size: 64\nlayers:\n- {type: dense, units: 32}\n")
    args = ("compress", str(spec), "--group-prune", "0.25", "--prune", "0.5")
    result = _phymem(*args, "--json")
    assert result.returncode == 0, result.stderr
    grouped = json.loads(result.stdout)["group_pruned"]
    assert grouped["size_bytes"]["bitmap"] == 768 * 4 + 192 + 8 + 128
    assert grouped["macs_nonzero"] == 768
    text = _phymem(*args)
    assert text.returncode == 0 and "MACs 1536 (surviving groups), 768 nonzero" in text.stdout
    for flag, value in (("--prune", "1.0"), ("--group-prune", "-0.1"), ("--group-prune", "1")):
        other = "--group-prune" if flag == "--prune" else "--prune"
        bad = _phymem("compress", str(spec), flag, value, other, "0.5")
        assert bad.returncode == 2 and flag in bad.stderr, bad.stderr


def test_sgl_rows_meet_the_printed_flops_at_the_groups_they_solve_for() -> None:
    from benchmarks.compression_tables import SGL_PRINTED, kept_for_flops, sgl_estimate
    from estimator.compression import group_pruned_bytes
    from estimator.flops import structured_macs

    for count, (_memory, flops) in SGL_PRINTED.items():
        kept = kept_for_flops(count, flops)
        size, found = sgl_estimate(count, kept)
        assert flops <= found <= 1.03 * flops, (count, kept, found)
        assert sgl_estimate(count, kept - 0.01)[1] < flops  # the smallest such fraction
        layers = resolve(detnet(layers=count))
        assert size == group_pruned_bytes(layers, 1 - kept)
        assert found == 2 * structured_macs(layers, 1 - kept)
    dense_size, dense_flops = sgl_estimate(90, 1.0)
    assert dense_flops == 2 * 90 * 26_000 and dense_size > model_bytes(resolve(detnet()))


def test_sgl_sparsity_is_fitted_once_and_the_rows_are_the_combined_recipe() -> None:
    from benchmarks.compression_tables import (
        SGL_FIT_LAYERS,
        SGL_FIT_ROW,
        SGL_PRINTED,
        SGL_TABLE2,
        fit_element_sparsity,
        kept_for_flops,
        removed_for_flops,
        sgl_estimate,
        sgl_fit,
    )
    from estimator.compression import group_pruned_bytes, recipe_report
    from estimator.flops import structured_macs

    removed, sparsity = sgl_fit()
    memory, flops = SGL_TABLE2[SGL_FIT_ROW]
    layers = resolve(detnet(layers=SGL_FIT_LAYERS))
    exact = 1 - kept_for_flops(SGL_FIT_LAYERS, flops)
    assert structured_macs(layers, removed) == structured_macs(layers, exact)  # same groups

    def csr(count_layers: list[Any], s: float) -> int:
        return group_pruned_bytes(count_layers, removed, sparsity=s, storage="sparse")

    # the smallest sparsity (4 decimals) whose stored bytes meet the printed MB
    assert csr(layers, sparsity) <= memory * 1e6 < csr(layers, sparsity - 1e-4)
    for count, (_memory, printed_flops) in SGL_PRINTED.items():
        cut = removed_for_flops(count, printed_flops)
        report: Any = recipe_report(resolve(detnet(layers=count)), prune=sparsity, group_prune=cut)
        grouped = report["group_pruned"]
        assert (grouped["size_bytes"]["sparse"], 2 * grouped["macs"]) == sgl_estimate(
            count, 1 - cut, sparsity
        )
    with pytest.raises(ValueError, match="floor"):
        fit_element_sparsity(SGL_FIT_LAYERS, removed, 10_000)
