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

from dataclasses import dataclass
from typing import TYPE_CHECKING

from estimator.bfc import BFC_ALIGNMENT, Bfc, Chunk, largest_chunk
from estimator.costs import Allocation, CostRow, align_up
from estimator.rewrites import CPU_DEVICE_MEMORY_LIMIT, rewritten_batch_norm
from estimator.steps import StepGenerator, StepPlan, Trace

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

BASIS = "tensorflow-2.21-cpu-bfc"  # the allocator and runtime the sequence was traced on
RESIDENT_BYTES = 0  # nothing outside the allocator is counted by get_memory_info


@dataclass
class Peak:
    bytes: int
    live: list[tuple[int, int]]  # (tensor, chunk bytes)
    trigger: int  # the tensor whose allocation reached the peak
    upper: int  # a bound on the bytes in use under any order of a measured step


def simulate(trace: Trace) -> Peak:
    """Run the trace through the allocator; the live chunks at the measured peak.

    The bound: BFC's bytes in use are the sizes of the chunks in use, each at most
    `largest_chunk` of its request whatever the allocator's layout. During a measured step
    the tensors in use are some of those alive when the step starts and some of those the
    step allocates, in whatever order the executor runs the step's nodes; their largest
    chunks summed bound the bytes in use under every order (loose: it assumes every tensor
    of the step alive at once).
    """
    bfc = Bfc()
    chunks: dict[int, Chunk] = {}
    peak, at, live = -1, -1, []
    upper, step_bound = 0, 0
    starts = set(trace.step_starts)
    for n, event in enumerate(trace.events):
        if n in starts:
            step_bound = sum(largest_chunk(trace.tensors[t].size) for t in chunks)
        if event >= 0:
            if n >= trace.measured_from:
                step_bound += largest_chunk(trace.tensors[event].size)
                upper = max(upper, step_bound)
            chunks[event] = bfc.allocate(trace.tensors[event].size)
            if n >= trace.measured_from and bfc.in_use > peak:
                peak, at = bfc.in_use, n
                live = [(tensor, chunk.size) for tensor, chunk in chunks.items()]
        elif ~event in chunks:
            bfc.release(chunks.pop(~event))
    return Peak(peak, live, trace.events[at], upper)


class FrameworkCostModel:
    """Per-layer bytes alive at the allocator peak of a TF/Keras training step."""

    name = "framework"
    basis = BASIS
    alignment = BFC_ALIGNMENT
    decoder_blocks: int | None = None  # families expand with Table 1's 3 blocks
    batch_invariant = False  # the peak moment moves with the batch

    def __init__(self, device_memory_limit: int = CPU_DEVICE_MEMORY_LIMIT) -> None:
        self.device_memory_limit = device_memory_limit

    def rows(self, model: ModelSpec, layers: list[ResolvedLayer]) -> list[CostRow]:
        return self.bounded_rows(model, layers)[0]

    def bounded_rows(
        self, model: ModelSpec, layers: list[ResolvedLayer]
    ) -> tuple[list[CostRow], int]:
        """The rows alive at the simulated peak, and the bound of `simulate`."""
        rewritten = rewritten_batch_norm(model, layers, self.device_memory_limit)
        plan = StepPlan(model, layers, rewritten)
        trace = StepGenerator(plan).run()
        peak = simulate(trace)
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
            rows.append(
                CostRow(
                    name=layer.name,
                    type=layer.type,
                    part=layer.spec.part,
                    output_features=layer.out_features,
                    params=layer.params,
                    allocations=tuple(per_row[i + 1]),
                    index=layer.index,
                    note="; ".join(notes),
                )
            )
        return rows, peak.upper + RESIDENT_BYTES

    def resident_bytes(self) -> int:
        return RESIDENT_BYTES
