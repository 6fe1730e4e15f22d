"""The framework cost model: its mechanisms, and its accuracy outside the benchmark grid."""

from __future__ import annotations

import pytest

from estimator.engine import estimate
from estimator.framework import BFC_ALIGNMENT, FrameworkCostModel
from estimator.spec import FamilySpec, ModelSpec

BAE = FamilySpec(family="bae", k=2, nt=2, ht=64, hr=512, batch=512)


def test_optimizer_slots_per_weight() -> None:
    params = sum(r.params for r in estimate(BAE, "framework").layers)
    trainable = params - 3 * 2 * 512  # BN moving mean / variance are not trained
    slots = {}
    for optimizer in ("adam", "momentum", "sgd", "none"):
        spec = BAE.model_copy(update={"optimizer": optimizer})
        slots[optimizer] = estimate(spec, "framework").breakdown.optimizer
    assert slots["sgd"] == slots["none"] == 0
    assert abs(slots["momentum"] - 4 * trainable) < 64 * BFC_ALIGNMENT
    assert slots["adam"] == 2 * slots["momentum"]


def test_mixed_keeps_float32_master_weights() -> None:
    fp32 = estimate(BAE, "framework").breakdown
    mixed = estimate(BAE.model_copy(update={"precision": "mixed"}), "framework").breakdown
    assert mixed.weights == fp32.weights and mixed.optimizer == fp32.optimizer


def test_rows_are_aligned_and_explained() -> None:
    e = estimate(BAE, "framework")
    peak_rows = [row for row in e.layers if row.note.startswith("peak")]
    assert len(peak_rows) == 1
    for row in e.layers:
        for size in (row.weights, row.gradients, row.optimizer, row.activations, row.ephemeral):
            assert size % BFC_ALIGNMENT == 0
    assert FrameworkCostModel().resident_bytes() == 0
    assert e.layers[0].name == "input" and e.layers[0].ephemeral > 0


def test_activations_grow_with_batch_and_weights_do_not() -> None:
    small = estimate(BAE, "framework").breakdown
    big = estimate(BAE.model_copy(update={"batch": 4096}), "framework").breakdown
    assert big.weights == small.weights
    assert big.activations > 4 * small.activations


# Estimate errors on this CPU, 2 steps: +1.1%, -15.4%, -15.0%, -4.6% with the oneDNN
# allocator; the generic model reads -21.6% with the BFC allocator that
# profilers.allocator uses now. The framework mode misses the 2% / 5% target
# (grid: median 10.9%, max 18.3%, see benchmarks/accuracy.md); the tolerance states what
# it achieves, not the goal.
OUTSIDE_GRID = [
    FamilySpec(family="bae", k=3, nt=3, ht=128, hr=1024, batch=1024),
    FamilySpec(family="tanh-bae", k=2, nt=2, ht=64, hr=768, batch=2048, optimizer="momentum"),
    FamilySpec(family="ae", k=3, nt=2, ht=128, hr=1024, batch=512, optimizer="sgd"),
    ModelSpec.model_validate(
        {
            "input_kind": "real",
            "input_size": 256,
            "batch": 1024,
            "loss": "mse",
            "layers": [
                {"type": "dense", "units": 1024, "activation": "relu"},
                {"type": "batch_norm"},
                {"type": "dense", "units": 1024, "activation": "relu"},
                {"type": "dense", "units": 256},
            ],
        }
    ),
]
TOLERANCE = 0.25  # what the framework mode achieves on CPU today, not the 5% goal


@pytest.mark.tensorflow
@pytest.mark.parametrize("spec", OUTSIDE_GRID, ids=lambda s: s.model_dump_json()[:50])
def test_framework_estimate_matches_measurement(spec: FamilySpec | ModelSpec) -> None:
    pytest.importorskip("tensorflow")
    from profilers.allocator import measure_in_subprocess

    m = measure_in_subprocess(spec, steps=2, timeout_s=120)
    assert m.status == "ok" and m.peak_bytes, m.error
    predicted = estimate(spec, "framework").total_bytes
    assert abs(predicted - m.peak_bytes) / m.peak_bytes <= TOLERANCE, (predicted, m.peak_bytes)
