"""Framework mode: what TensorFlow's allocator holds at the peak of a Keras training step.

The paper's method (estimator.paper) counts weights, gradients and in/out tensors; this
mode replays what TF 2.21 + Keras 3 allocate, in order, through a model of TF's BFC
allocator, and reports the most that allocator holds during the measured steps, as
profilers/allocator.py measures it: the process builds the model, runs WARM_UP_STEPS
warm-up steps (3: the first instantiates the step function; by the third the allocator's
layout has settled, so the measured steps of one process agree), then MEASURED_STEPS steps,
and reports the largest per-step `get_memory_info` peak. Read it in this order:

  estimator/bfc.py       the allocator model (which chunk a request gets, bytes in use);
  estimator/rewrites.py  grappler's AddN rewrite, which also decides the executor;
  estimator/steps.py     the allocation sequence: build, constants, one step skeleton with
                         a forward and a backward rule per layer type, both precisions;
  estimator/conv_steps.py  the rules of CsiNet's layers (conv2d, views, leaky_relu, residual);
  estimator/detnet_steps.py  DetNet's training graph (detnet_layer, the Eq. (4) loss);
  this module            the cost model: generate, replay, report the tensors alive at the
                         peak as per-layer rows, and the bound no execution order exceeds.

The sequence was read off BFC allocator traces (TF profiler memory events, `python -m
profilers.trace`); replaying a traced sequence through estimator.bfc gives TF's chunk
sizes and bytes in use at every event, which tests/test_profilers.py checks.

Not modelled: the other small tensors of the runtime, the channel and the loss (biases,
batch-norm parameters and their gradients, variable handles and the graph's constants are
modelled), which can shift where larger tensors land, and the order of the graph's
independent nodes, which TF's executors take from a pointer-keyed edge set, so it differs
between fresh processes of the same graph (profilers/allocator.py); both move the
measured peak between a few values (benchmarks/accuracy.md lists the spread). The rows
follow one order: they predict one of those values, not which one a process lands on;
`upper_bytes` bounds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

from estimator import budget as work_budget
from estimator import conv_steps, detnet_steps
from estimator.bfc import BFC_ALIGNMENT, Bfc, Chunk, largest_chunk
from estimator.costs import Allocation, CostRow, align_up, layer_row
from estimator.rewrites import CPU_DEVICE_MEMORY_LIMIT, rewritten_batch_norm
from estimator.steps import MATMULS, StepGenerator, StepPlan, Trace

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

# the allocator and runtime the sequence was traced on: TF 2.21's CPU BFC allocator with
# oneDNN's kernels (profilers.allocator sets TF_ENABLE_ONEDNN_OPTS=1 where it measures)
BASIS = "tensorflow-2.21-cpu-bfc"
RESIDENT_BYTES = 0  # nothing outside the allocator is counted by get_memory_info


# CPU features with which TF's oneDNN build runs float16 MatMuls itself (mkl_util.h,
# IsDataTypeSupportedByOneDNNOnThisCPU(DT_HALF)); without them TF's Eigen kernel converts
ONEDNN_FLOAT16_FLAGS = ("avx512_fp16", "amx_fp16")


@cache
def float16_matmul_in_float32(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this host's TF computes a float16 MatMul through float32 copies (Eigen),
    rather than in oneDNN on float16 (CPUs with AVX512-FP16 or AMX-FP16). Read from the
    CPU's flags, since which kernel runs decides what is allocated; where the flags cannot
    be read, the traced Eigen path."""
    try:
        with open(cpuinfo) as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return True
    return not any(flag in flags for flag in ONEDNN_FLOAT16_FLAGS)


@dataclass
class Peak:
    bytes: int
    live: list[tuple[int, int]]  # (tensor, chunk bytes)
    trigger: int  # the tensor whose allocation reached the peak
    any_layout: int  # the most the step's live tensors could hold, whatever chunks they got


def simulate(trace: Trace) -> Peak:
    """Run the trace through the allocator: the live chunks at the measured peak, and a
    bound on the bytes in use that holds under every allocator layout.

    The layout a process's step tensors land in varies: the runtime's small tensors,
    which the model does not follow, nick big free chunks, and BFC hands a request a
    whole chunk when it is less than twice the request (profilers/allocator.py lists
    fresh processes of one config up to 29% apart). The bound counts the tensors the
    build made (weights, slots, handles, batch, the graph's constants: allocated in a
    fixed order before the first step, their chunks as simulated) at their chunks, and
    every tensor a step allocates at `largest_chunk`, the most BFC can hand it in any
    layout; its largest sum over the measured steps' events bounds `bytes`.
    """
    bfc = Bfc()
    chunks: dict[int, Chunk] = {}
    held: dict[int, int] = {}  # tensor -> the bytes the bound counts for it
    peak, at, live = -1, -1, []
    any_layout, counted = 0, 0
    budget = work_budget.current()  # charged as the replay runs (estimator.budget)
    work = 0
    for n, event in enumerate(trace.events):
        work += 1
        if work >= work_budget.CHARGE_EVERY and budget is not None:
            budget.charge(work)
            work = 0
        if event >= 0:
            chunk = chunks[event] = bfc.allocate(trace.tensors[event].size)
            held[event] = (
                chunk.size if n < trace.steps_from else largest_chunk(trace.tensors[event].size)
            )
            counted += held[event]
            if n >= trace.measured_from:
                any_layout = max(any_layout, counted)
                if bfc.in_use > peak:
                    peak, at = bfc.in_use, n
                    live = [(tensor, chunk.size) for tensor, chunk in chunks.items()]
                    work += len(live)
        elif ~event in chunks:
            counted -= held.pop(~event)
            bfc.release(chunks.pop(~event))
    if budget is not None:
        budget.charge(work)
    return Peak(peak, live, trace.events[at], any_layout)


def upper_bound(plan: StepPlan, modelled: Peak) -> int:
    """Bytes in use no execution order the model represents exceeds, in any layout.

    Within a step, a Dense's input and kernel gradients read only the incoming gradient,
    so the executor may run either first (StepPlan.kernel_first): the single-threaded
    executor most processes measured takes the input gradient first, the default
    executor the kernel gradient (and copies the kernel its update overwrites). For a
    single-threaded step the bound is the larger `Peak.any_layout` of the modelled order
    and of every Dense's kernel gradient first; a default-executor step (grappler's
    rewrite) is bounded in its traced order only: its other order combined with the
    rewrite's in-place sums was never traced, and the generator cannot say what it
    allocates (the 15 runs of each such grid config spread by 0.02-12%). Not covered:
    orders the generator cannot express (for example every kernel gradient deferred to the
    end of the backward pass, seen in some mixed-precision traces) and the runtime's
    unmodelled small tensors' own bytes (a few KiB).
    """
    if plan.default_executor:
        return max(modelled.any_layout, modelled.bytes)
    if detnet_steps.handles(plan):  # DetNet's orders (estimator.detnet_steps)
        others = [simulate(trace).any_layout for trace in detnet_steps.other_orders(plan)]
        return max(modelled.any_layout, modelled.bytes, *others)
    if conv_steps.handles(plan.layers):  # its rules add orders of their own
        others = [simulate(trace).any_layout for trace in conv_steps.other_orders(plan)]
        return max(modelled.any_layout, modelled.bytes, *others)
    matmuls = frozenset(i for i, layer in enumerate(plan.layers) if layer.type in MATMULS)
    flipped = simulate(StepGenerator(replace(plan, flipped=matmuls)).run())
    return max(modelled.any_layout, flipped.any_layout, modelled.bytes)


def generate(plan: StepPlan) -> Trace:
    """The process's allocation sequence under the rules the model needs."""
    if detnet_steps.handles(plan):
        return detnet_steps.generate(plan)
    return conv_steps.generate(plan)


class FrameworkCostModel:
    """Per-layer bytes alive at the allocator peak of a TF/Keras training step."""

    name = "framework"
    basis = BASIS
    alignment = BFC_ALIGNMENT
    decoder_blocks: int | None = None  # families expand with Table 1's 3 blocks
    batch_invariant = False  # the peak moment moves with the batch

    def __init__(
        self,
        device_memory_limit: int = CPU_DEVICE_MEMORY_LIMIT,
        float16_via_float32: bool | None = None,  # None: as this host's CPU runs it
    ) -> None:
        self.device_memory_limit = device_memory_limit
        if float16_via_float32 is None:
            float16_via_float32 = float16_matmul_in_float32()
        self.float16_via_float32 = float16_via_float32

    def step_plan(self, model: ModelSpec, layers: list[ResolvedLayer]) -> StepPlan:
        """The step as this host's TF runs it: grappler's rewrite, the float16 kernel path."""
        rewritten = rewritten_batch_norm(model, layers, self.device_memory_limit)
        return StepPlan(model, layers, rewritten, float16_via_float32=self.float16_via_float32)

    def generate(self, model: ModelSpec, layers: list[ResolvedLayer]) -> Trace:
        """The process's allocation sequence (what `simulate` replays)."""
        return generate(self.step_plan(model, layers))

    def rows(self, model: ModelSpec, layers: list[ResolvedLayer]) -> list[CostRow]:
        return self.bounded_rows(model, layers)[0]

    def bounded_rows(
        self, model: ModelSpec, layers: list[ResolvedLayer]
    ) -> tuple[list[CostRow], int]:
        """The rows alive at the simulated peak, and `upper_bound`."""
        plan = self.step_plan(model, layers)
        trace = generate(plan)
        peak = simulate(trace)
        upper = upper_bound(plan, peak)
        per_row: list[list[Allocation]] = [[] for _ in range(len(layers) + 1)]
        batch = model.batch
        for tensor_id, chunk in peak.live:
            tensor = trace.tensors[tensor_id]
            rounded = align_up(tensor.size, BFC_ALIGNMENT)
            if tensor.per_sample and tensor.size % batch == 0:
                per_row[tensor.layer].append(Allocation(tensor.category, 0, tensor.size // batch))
            else:
                per_row[tensor.layer].append(Allocation(tensor.category, tensor.size))
            if chunk > rounded:  # BFC did not split the chunk it handed out
                per_row[tensor.layer].append(Allocation("ephemeral", chunk - rounded))
        trigger = trace.tensors[peak.trigger].layer
        rows = [
            CostRow(
                name="input",
                type="input",
                part="encoder",
                output_features=model.input_size,
                params=0,
                allocations=tuple(per_row[0]),
                note=("peak: allocated here; " if trigger == 0 else "") + "input batch, labels",
            )
        ]
        for i, layer in enumerate(layers):
            notes = []
            if trigger == i + 1:
                notes.append("peak: allocated here")
            if i == plan.rewritten:
                notes.append("grappler rewrote its input-gradient AddN")
            rows.append(layer_row(layer, per_row[i + 1], note="; ".join(notes)))
        return rows, upper + RESIDENT_BYTES

    def resident_bytes(self) -> int:
        return RESIDENT_BYTES
