"""The framework cost model: its mechanisms, and its accuracy outside the benchmark grid."""

from __future__ import annotations

import pytest

from estimator.bfc import BFC_ALIGNMENT, MIB, Bfc, largest_chunk
from estimator.costs import align_up
from estimator.engine import cached_plan, estimate, model_for
from estimator.framework import FrameworkCostModel, simulate
from estimator.layers import resolve
from estimator.rewrites import (
    CPU_DEVICE_MEMORY_LIMIT,
    GRAPPLER_MEMORY_PRESSURE,
    rewritten_batch_norm,
    static_peak,
)
from estimator.spec import FamilySpec, ModelSpec
from estimator.steps import StepGenerator, StepPlan

BAE = FamilySpec(family="bae", k=2, nt=2, ht=64, hr=512, batch=512)


def test_optimizer_slots_per_weight() -> None:
    params = sum(r.params for r in estimate(BAE, "framework").layers)
    trainable = 4 * (params - 3 * 2 * 512)  # bytes; BN moving mean / variance are not trained
    slots = {}
    for optimizer in ("adam", "momentum", "sgd", "none"):
        spec = BAE.model_copy(update={"optimizer": optimizer})
        slots[optimizer] = estimate(spec, "framework").breakdown.optimizer
    assert slots["sgd"] == slots["none"] == 0
    assert abs(slots["adam"] - 2 * trainable) < 64 * BFC_ALIGNMENT  # m and v
    # momentum: the velocity, plus m * momentum computed at the start of the step for
    # every variable (it needs no gradient), which becomes the next velocity
    assert abs(slots["momentum"] - 2 * trainable) < 64 * BFC_ALIGNMENT


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


def test_bfc_hands_out_unsplit_chunks_below_twice_the_request() -> None:
    bfc = Bfc()
    big = bfc.allocate(24 * MIB)  # a new region: 2 MiB doubled to 32 MiB
    assert big.size == 32 * MIB  # 32 MiB < 2 x 24 MiB: handed out whole
    bfc.release(big)
    half = bfc.allocate(16 * MIB)  # 32 MiB >= 2 x 16 MiB: split
    assert half.size == 16 * MIB and bfc.in_use == 16 * MIB
    small = bfc.allocate(100)
    assert small.size == BFC_ALIGNMENT  # 256-byte rounding, split off the free rest
    bfc.release(half)
    bfc.release(small)  # coalesces with both neighbours
    assert bfc.allocate(17 * MIB).size == 32 * MIB


def test_grappler_rewrites_the_addn_only_under_memory_pressure() -> None:
    """The rule of memory_optimizer.cc's SchedulingPass, checked on the grid's executors.

    profilers.allocator falls back to the default executor exactly when grappler added the
    rewrite's reference-typed edges: at B = 2048 and for ae k=6 (a 2048 x 4096 kernel) on
    the CPU's 256 MiB device limit, never at B = 256 otherwise (benchmarks/accuracy.md).
    """

    def rewritten(spec: FamilySpec, limit: int = CPU_DEVICE_MEMORY_LIMIT) -> int | None:
        model = model_for(spec, "framework")
        return rewritten_batch_norm(model, resolve(model), limit)

    assert rewritten(FamilySpec(family="bae", k=2, nt=2, batch=2048)) is not None
    assert rewritten(FamilySpec(family="bae", k=2, nt=2, batch=2048, precision="mixed"))
    assert rewritten(FamilySpec(family="ae", k=6, nt=2, batch=256)) is not None
    assert rewritten(FamilySpec(family="bae", k=6, nt=4, batch=256)) is None
    assert rewritten(FamilySpec(family="ae", k=4, nt=2, batch=256)) is None
    # a GPU's limit is its whole BFC pool: no memory pressure at these sizes
    assert rewritten(FamilySpec(family="bae", k=2, nt=2, batch=2048), 70 * 2**30) is None
    big = estimate(FamilySpec(family="bae", k=2, nt=2, batch=2048), "framework")
    assert any("grappler" in row.note for row in big.layers)


def test_grappler_rewrites_only_an_addn_alive_at_the_static_peak() -> None:
    """SchedulingPass rewrites only the AddNs with an input alive at the static peak.

    Traced with `python -m profilers.grappler_static` (grappler's static estimate of the
    optimised step graph): ae k=4 nt=3 B=300 sgd peaks at 128.8M, under the 214.7M
    threshold, and its measured runs kept the single-threaded executor (the earlier rule
    read 250M and predicted a rewrite); ae-embedding k=6 B=3000 adam peaks at the loss,
    where no AddN input is alive, and kept it too; bae H_R=4096 B=256 adam peaks at the
    Dense above batch_norm_9 during its Adam update, with batch_norm_9's first gradient
    alive, so that AddN (not the last norm's) is the one rewritten.
    """

    def rewritten(spec: FamilySpec) -> int | None:
        model = model_for(spec, "framework")
        return rewritten_batch_norm(model, resolve(model), CPU_DEVICE_MEMORY_LIMIT)

    def layer_names(spec: FamilySpec) -> list[str]:
        return [layer.type for layer in resolve(model_for(spec, "framework"))]

    ae_sgd = FamilySpec(family="ae", k=4, nt=3, batch=300, optimizer="sgd")
    model = model_for(ae_sgd, "framework")
    peak, holder = static_peak(StepPlan(model, resolve(model), None))
    assert peak < GRAPPLER_MEMORY_PRESSURE * CPU_DEVICE_MEMORY_LIMIT < 250 * 10**6
    assert rewritten(ae_sgd) is None
    embedding = FamilySpec(family="ae-embedding", k=6, nt=2, batch=3000, hr=384, ht=128)
    model = model_for(embedding, "framework")
    peak, holder = static_peak(StepPlan(model, resolve(model), None))
    assert peak > GRAPPLER_MEMORY_PRESSURE * CPU_DEVICE_MEMORY_LIMIT and holder is None
    wide = FamilySpec(family="bae", k=2, nt=2, batch=256, hr=4096, ht=512)
    norms = [i for i, kind in enumerate(layer_names(wide)) if kind == "batch_norm"]
    assert rewritten(wide) == norms[-2]  # batch_norm_9, below the 4096 x 4096 Dense
    assert rewritten(FamilySpec(family="ae", k=6, nt=2, batch=256)) == norms[-1]
    # the framework estimate of the sgd config is the single-threaded step's
    ae_estimate = estimate(ae_sgd, "framework")
    assert not any("grappler" in row.note for row in ae_estimate.layers)


def _plan(spec: FamilySpec) -> StepPlan:
    model = model_for(spec, "framework")
    layers = resolve(model)
    return StepPlan(model, layers, rewritten_batch_norm(model, layers, CPU_DEVICE_MEMORY_LIMIT))


def test_step_graph_constants_and_the_fused_softmax_loss() -> None:
    """The step graph's constants come before the first step; a rewritten AddN's zeros,
    allocated after the small ones have used up the small free chunks, takes a whole
    32 MiB region (traced: bae k=6 nt=2 B=2048, AddN_2/tmp_var_zeros in 33,450,496 bytes)."""
    bae = _plan(FamilySpec(family="bae", k=6, nt=2, batch=2048))
    assert bae.rewritten is not None and not bae.fused_softmax_loss
    assert bae.loss_constants() == [2048 * 12 * 4] * 3  # binary cross-entropy, 12 bits
    trace = StepGenerator(bae).run()
    peak = simulate(trace)
    size, row = 2048 * bae.layers[bae.rewritten].out_features * 4, bae.rewritten + 1
    zeros = next(  # the first batch-sized tensor of the batch norm: made before any step
        t
        for t in trace.events
        if t >= 0 and (trace.tensors[t].layer, trace.tensors[t].size) == (row, size)
    )
    assert 31 * MIB < dict(peak.live)[zeros] < 2 * size  # whole: just under twice the request
    ae = _plan(FamilySpec(family="ae", k=6, nt=2, batch=256))
    assert ae.fused_softmax_loss and ae.loss_constants() == [256 * 4]
    assert not ae.needs_output(len(ae.layers) - 1)  # the logits are kept, not its softmax


# Fresh processes land on one of a few BFC layouts (the executor orders a graph's
# independent nodes by Edge pointer, and the runtime's small tensors nick big free chunks;
# 3 warm-up steps make the steps of one process agree, not the processes). What the mode
# claims, and each test checks: `upper_bytes` is at or above every process's peak; the
# expected peak is the layout these configs take most often (bae k3/nt3 and tanh-bae
# momentum: within 0.6% of 5 of 5 runs on the 2-core CPU VM, yet a CI run of the bae saw
# 65.3M once and 69.3M twice), so the estimate must be within 2% of one of the runs, not
# of their median. Where processes spread over several layouts (ae sgd: 29.0M and 30.7M;
# the generic model: 49.4M to 57.8M) only the bound is checked.
GENERIC = ModelSpec.model_validate(
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
)
SINGLE_LAYOUT = 0.02  # the accuracy target, against the run of the predicted layout
OUTSIDE_GRID: list[tuple[FamilySpec | ModelSpec, float | None]] = [  # spec, tolerance
    (FamilySpec(family="bae", k=3, nt=3, ht=128, hr=1024, batch=1024), SINGLE_LAYOUT),
    (
        FamilySpec(family="tanh-bae", k=2, nt=2, ht=64, hr=768, batch=2048, optimizer="momentum"),
        SINGLE_LAYOUT,
    ),
    (FamilySpec(family="ae", k=3, nt=2, ht=128, hr=1024, batch=512, optimizer="sgd"), None),
    (GENERIC, None),
]
RUNS = 5


@pytest.mark.tensorflow
@pytest.mark.parametrize(("spec", "tolerance"), OUTSIDE_GRID, ids=lambda v: str(v)[:50])
def test_framework_estimate_matches_measurement(
    spec: FamilySpec | ModelSpec, tolerance: float | None
) -> None:
    pytest.importorskip("tensorflow")
    from profilers.allocator import measure_in_subprocess

    peaks = []
    for _ in range(RUNS):
        m = measure_in_subprocess(spec, steps=2, timeout_s=120)
        assert m.status == "ok" and m.peak_bytes, m.error
        peaks.append(m.peak_bytes)
    result = estimate(spec, "framework")
    assert max(peaks) <= result.upper_bytes, (result.upper_bytes, peaks)
    if tolerance is not None:
        closest = min(peaks, key=lambda peak: abs(result.total_bytes - peak))
        assert abs(result.total_bytes - closest) / closest <= tolerance, (result.total_bytes, peaks)


# Peaks TensorFlow measured, each with the command that produced it: every one must be at
# or below upper_bytes (coverage), and traced single-layout ones within 1% of the estimate.
# From benchmarks/accuracy.md (15 fresh processes each, `python -m benchmarks.accuracy
# --runs 15 --steps 2`): the highest run of the configs that spread the most.
GRID_HIGHEST_RUNS: list[tuple[FamilySpec, int]] = [
    (FamilySpec(family="bae", k=2, nt=2, batch=256), 182_674_944),
    (FamilySpec(family="tanh-bae", k=2, nt=2, batch=256), 182_634_752),
    (FamilySpec(family="bae", k=2, nt=2, batch=256, precision="mixed"), 188_734_720),
    (FamilySpec(family="bae", k=4, nt=4, batch=2048), 342_865_408),
    (FamilySpec(family="ae", k=4, nt=2, batch=256), 191_775_488),
]
# `python -m profilers.trace record SPEC.json OUT.json` (one process each, 2 measured
# steps): SGD's and momentum's lr * g forward the gradient's buffer (see estimator.steps).
TRACED_PEAKS: list[tuple[FamilySpec, int]] = [
    (FamilySpec(family="bae", k=2, nt=2, batch=1, optimizer="none"), 50_938_624),
    (FamilySpec(family="bae", k=2, nt=2, batch=1, optimizer="momentum"), 118_615_296),
]
# From issue 8 (`phymem profile ... --json`, fresh processes): estimates were 40.6% and
# 32.9% above these before SGD's update stopped allocating a temporary.
ISSUE_PEAKS: list[tuple[FamilySpec, int]] = [
    (FamilySpec(family="ae", k=4, nt=3, batch=300, optimizer="sgd"), 167_275_520),
    (FamilySpec(family="ae", k=4, nt=3, batch=300, optimizer="sgd"), 122_587_392),
    (FamilySpec(family="bae", k=2, nt=2, batch=3, optimizer="sgd"), 51_106_816),
]


@pytest.mark.parametrize(
    ("spec", "peak"), GRID_HIGHEST_RUNS + TRACED_PEAKS + ISSUE_PEAKS, ids=lambda v: str(v)[:60]
)
def test_upper_bytes_covers_measured_peaks(spec: FamilySpec, peak: int) -> None:
    result = estimate(spec, "framework")
    assert result.total_bytes <= result.upper_bytes
    assert peak <= result.upper_bytes, (peak, result.upper_bytes)


@pytest.mark.parametrize(
    ("spec", "peak"), TRACED_PEAKS + ISSUE_PEAKS[2:], ids=lambda v: str(v)[:60]
)
def test_sgd_and_momentum_updates_allocate_no_temporary(spec: FamilySpec, peak: int) -> None:
    """With an `lr * g` temporary the kernel gradient of a 2048 x 2048 Dense would be
    joined by a second 16 MiB tensor at the peak (+33%, what the mode estimated before)."""
    predicted = estimate(spec, "framework").total_bytes
    assert abs(predicted - peak) / peak <= 0.01, (predicted, peak)


def test_largest_chunk_is_what_bfc_can_hand_out() -> None:
    """The bound's building block: a request never gets a chunk above `largest_chunk`."""
    bfc = Bfc()
    for size in (100, 3 * MIB, 24 * MIB, 200 * MIB):
        for chunk in (bfc.allocate(size), bfc.allocate(size)):
            assert align_up(size, BFC_ALIGNMENT) <= chunk.size <= largest_chunk(size)
    assert largest_chunk(24 * MIB) == 48 * MIB - BFC_ALIGNMENT
    assert largest_chunk(300 * MIB) == 428 * MIB - BFC_ALIGNMENT  # 128 MiB slack at most


def test_one_step_skeleton_for_both_precisions() -> None:
    """Mixed precision adds casts and float32 detours to the same step: the float16
    kernel casts exist only in mixed steps, and the float32 master weights are shared."""
    for precision in ("fp32", "mixed"):
        plan = _plan(BAE.model_copy(update={"precision": precision}))
        generator = StepGenerator(plan)
        trace = generator.run()
        assert len(trace.step_starts) == 2 and trace.measured_from == trace.step_starts[0]
        assert generator.kernels16 == {}  # every cast freed by its last reader
        alive = {t for t in trace.events if t >= 0} - {~t for t in trace.events if t < 0}
        persistent = {tensor for row in generator.weights for _, tensor in row}
        assert persistent <= alive


UPPER_SPECS: list[FamilySpec | ModelSpec] = [
    BAE,
    FamilySpec(family="ae", k=4, nt=3, batch=300, optimizer="sgd"),
    FamilySpec(family="bae", k=2, nt=2, batch=2048),  # grappler's rewrite: default executor
    FamilySpec(family="tanh-bae", k=3, nt=2, batch=64, precision="mixed", optimizer="momentum"),
    FamilySpec(family="ae-embedding", k=2, nt=2, batch=5, optimizer="none"),
]


@pytest.mark.parametrize("spec", UPPER_SPECS, ids=lambda s: str(s)[:60])
def test_upper_bytes_bounds_the_peak_and_is_reported(spec: FamilySpec | ModelSpec) -> None:
    framework = estimate(spec, "framework")
    assert framework.upper_bytes >= framework.total_bytes
    assert framework.basis == "tensorflow-2.21-cpu-bfc"
    assert framework.to_dict()["upper_bytes"] == framework.upper_bytes
    plan = cached_plan(spec, "framework")
    for batch in (1, 7, spec.batch):
        assert plan.upper_bytes(batch) >= plan.total_bytes(batch)
    paper = estimate(spec, "paper")
    assert paper.upper_bytes == paper.total_bytes and paper.basis == "paper-equations"


@pytest.mark.tensorflow
def test_grappler_static_probe_agrees_with_the_rewrite_rule() -> None:
    """Grappler itself, on the real step graph: the sgd config's static peak is below the
    threshold and nothing is rewritten; ae k=6 adam's peak holds the last norm's AddN input
    and the full pipeline rewrites it. The model's rule decides the same for both."""
    pytest.importorskip("tensorflow")
    import subprocess
    import sys

    from estimator.spec import canonical_json

    for spec, rewrites in (
        (FamilySpec(family="ae", k=4, nt=3, batch=300, optimizer="sgd"), False),
        (FamilySpec(family="ae", k=6, nt=2, batch=256), True),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "profilers.grappler_static", canonical_json(spec)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        lines = done.stdout.splitlines()
        assert f"rewritten by the full pipeline: {rewrites}" in lines
        ratio = float(lines[0].split("(")[1].split(" x")[0])
        assert (ratio > 1) == rewrites
        alive = [line for line in lines if line.startswith("AddN ") and "none" not in line]
        assert bool(alive) == rewrites
        model = model_for(spec, "framework")
        assert (
            rewritten_batch_norm(model, resolve(model), CPU_DEVICE_MEMORY_LIMIT) is not None
        ) == rewrites
