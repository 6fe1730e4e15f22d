"""What TensorFlow's allocator holds at the peak of a Keras training step.

The paper's method (estimator.paper) counts weights, gradients and in/out tensors; this
mode replays what TF 2.21 + Keras 3 allocate, in order, through a model of TF's BFC
allocator, and reports the most that allocator holds during the measured steps, as
profilers/allocator.py measures it: the process builds the model, runs WARM_UP_STEPS
warm-up steps (3: the first instantiates the step function; by the third the
allocator's layout has settled, so the measured steps of one process agree), then MEASURED_STEPS
steps, and reports the largest per-step `get_memory_info` peak. The
allocation sequence was read off BFC allocator traces (TF profiler memory events,
`python -m profilers.trace`; replaying a traced sequence through the model below gives
TF's chunk sizes and bytes in use at every event, which tests/test_profilers.py checks).
Its mechanisms:

Building the model (eager, in layer order)
  - a Dense/Embedding kernel is drawn by Keras' uniform initialiser: a uniform sample, its
    product with the range and the sum with the minimum are three tensors of the kernel's
    size; the sum becomes the variable, the other two are freed;
  - a bias and batch-norm's gamma, beta and moving statistics are filled tensors;
  - every variable's resource handle (VarHandleOp, 200 bytes, so one 256-byte chunk)
    follows its value and stays;
  - the optimizer is built eagerly by profilers.builders: its slots (Adam: m and v per
    trainable variable, momentum: m) are zeros filled one after another in variable order,
    each its own buffer, before the input batch and labels; weights and slots stay
    float32 with mixed precision;
  - the step function's graph is instantiated before the first step: its constants are
    allocated then and kept (GRAPH_SMALL_CONSTANTS small ones (shapes, scalars: about 35
    in the traced bae and ae graphs), the loss's constant-folded tensors (binary
    cross-entropy: three prediction-sized), then the zeros of a rewritten AddN, below).
    These small tensors fill the small free chunks left by the build, so the zeros land
    in the big free region and, no longer twice their size, take it whole.

A training step, in the order of TF's single-threaded executor
  - tensors that need no activation are computed first: with mixed precision the float16
    casts of the Dense kernels, with momentum m * momentum for every variable (it becomes
    the new velocity; the old one is freed at the update);
  - forward: every layer's output is kept for the backward pass (a Dense needs its input
    for the kernel gradient, ReLU/sigmoid/tanh/softmax gradients read their output, batch
    norm its input); batch norm's variance makes a batch x width squared difference
    (freed at once); batch norm's statistics (width-sized vectors) and the channel's
    random matrices are kept to the end of the step (small, but they split big free
    chunks); the loss makes two prediction-sized temporaries and the prediction's
    gradient, except softmax + categorical cross-entropy, which Keras runs as TF's fused
    SoftmaxCrossEntropyWithLogits on the logits (batch-sized tensors only; the logits
    are kept to the end of the step);
  - backward, last layer first: a Dense allocates its input gradient, then the first
    tensors of the batch-norm backward below it (the executor's order), then its kernel
    gradient, frees its input and the incoming gradient and updates the kernel at once
    (Keras applies each variable's update as soon as its gradient exists): Adam makes
    three variable-sized temporaries one after another (at most two alive with the
    gradient), momentum and SGD one; batch norm makes the gradient through the
    normalisation and the moments' gradients (Tile, Tile_1, sub), then frees its input;
  - mixed precision: a float16 MatMul on the CPU converts both operands and the result to
    float32 (three temporaries, freed once the float16 result exists); batch norm runs in
    float32 between a cast of its input (kept) and a float16 cast of its output; the
    incoming gradient is cast to float32 and the input gradient back to float16; the
    float16 kernel gradient is cast to float32 before the update; a rewritten AddN's
    temporary variable is freed as soon as its float16 cast exists.

Grappler's memory optimizer (tensorflow/core/grappler/optimizers/memory_optimizer.cc,
SchedulingPass): when the graph's statically estimated peak exceeds 0.8 x the device's
memory limit (256 MiB for TF's CPU device: ThreadPoolDevice is created with
Bytes(256 << 20); a GPU's limit is its BFC pool), every AddN with more than two inputs
whose inputs are alive at that static peak is rewritten into an accumulation into a
TemporaryVariable initialised from a zeros tensor. The only such AddN here is batch
norm's input gradient (direct, through the mean, through the variance). Constant folding
turns the zeros into a constant that stays allocated between steps; the temporary
variable lives from the batch norm's backward to the end of the step. The rewrite adds
reference-typed edges, which the single-threaded executor refuses, so profilers.allocator
runs such graphs on the default executor: the kernel gradient and its update come before
the input gradient, and the update copies the kernel (its buffer is still read). The
static estimate (graph_memory.cc) simulates the graph without in-place updates; it is
approximated by the largest transient moment of the backward pass plus, for every
trainable variable, its read, its gradient and its optimizer temporaries; the AddN
rewritten is that of the batch norm whose backward holds the most bytes. On the 25-config
grid this predicts exactly which measurements fell back to the default executor.

The BFC allocator (tensorflow/core/common_runtime/bfc_allocator.cc, simplified): sizes
round up to 256 bytes; free chunks sit in 21 power-of-two bins and a request takes the
smallest fitting chunk (lowest address on ties); a chunk is split only when it is at
least twice the request (or 128 MiB larger), so a request can hold up to twice its size;
freed chunks merge with free neighbours in the same region; with allow_growth (TF's CPU
BFC allocator) the first region is 2 MiB and every new region doubles the region size.
A chunk's slack over its request is reported as ephemeral bytes of the layer holding it.

Not modelled: the other small tensors of the runtime, the channel and the loss (biases,
batch-norm parameters and their gradients, variable handles and the graph's constants are
modelled), which can shift where larger tensors land, and the order of the graph's
independent nodes, which TF's executors take from a pointer-keyed edge set, so it differs
between fresh processes of the same graph (profilers/allocator.py); both move the
measured peak between a few values (benchmarks/accuracy.md lists the spread). The model
follows one order: it predicts one of those values, not which one a process lands on.

The rows are the tensors alive at the simulated peak, per layer.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from estimator.costs import Allocation, Category, CostRow, align_up, layer_row
from estimator.units import MIB

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

BFC_ALIGNMENT = 256
FLOAT32 = 4
FLOAT16 = 2
OPTIMIZER_SLOTS = {"adam": 2, "momentum": 1, "sgd": 0, "none": 0}
UPDATE_TEMPORARIES = {"adam": 3, "momentum": 1, "sgd": 1, "none": 1}  # sequential, per variable
BATCH_NORM_MOMENT_TEMPORARIES = 3  # Tile, Tile_1, sub
BATCH_NORM_STATISTICS = 6  # mean, variance, batchnorm/add, batchnorm/mul, mul, mul_2
LOSS_TEMPORARIES = 2  # prediction-sized temporaries of the loss
WARM_UP_STEPS = 3  # as profilers.allocator.WARM_UP_STEPS: the first creates the slots
MEASURED_STEPS = 2  # steps after the warm-up whose largest peak is reported
RESIDENT_BYTES = 0  # nothing outside the allocator is counted by get_memory_info
OUTPUT_NEEDING = ("relu", "sigmoid", "tanh", "softmax")  # gradients that read the output
NORMALISATIONS = ("batch_norm", "layer_norm")
GRAPH_SMALL_CONSTANTS = 35  # the step graph's small constants (traced bae/ae graphs: 35-37)
VARIABLE_HANDLE_BYTES = 200  # a resource handle (VarHandleOp's output), one per variable

# TF's BFC allocator (bfc_allocator.cc) with allow_growth, as the CPU BFC allocator runs
BFC_BINS = 21
BFC_INITIAL_REGION = 2 * MIB
BFC_MAX_INTERNAL_FRAGMENTATION = 128 * MIB
# grappler's SchedulingPass (memory_optimizer.cc)
CPU_DEVICE_MEMORY_LIMIT = 256 * MIB  # ThreadPoolDevice(..., Bytes(256 << 20), ...)
GRAPPLER_MEMORY_PRESSURE = 0.8


# ---------------------------------------------------------------------------------------
# The BFC allocator


@dataclass(slots=True)  # thousands per estimate: slots make them cheaper to make and read
class _Chunk:
    addr: int
    size: int
    region_end: int
    free: bool = True
    prev: _Chunk | None = None
    next: _Chunk | None = None
    tensor: int = -1  # the tensor it holds, when in use


def _bin(size: int) -> int:
    return min(max(size // BFC_ALIGNMENT, 1).bit_length() - 1, BFC_BINS - 1)


class _Bfc:
    """Best-fit with coalescing, TF's BFCAllocator without its statistics and limits."""

    def __init__(self) -> None:
        self.region_bytes = BFC_INITIAL_REGION
        self.next_region = 0
        self.bins: list[list[tuple[int, int]]] = [[] for _ in range(BFC_BINS)]
        self.free_chunks: dict[int, _Chunk] = {}
        self.in_use = 0

    def _add_free(self, chunk: _Chunk) -> None:
        chunk.free = True
        self.free_chunks[chunk.addr] = chunk
        bisect.insort(self.bins[_bin(chunk.size)], (chunk.size, chunk.addr))

    def _take_free(self, chunk: _Chunk) -> None:
        entries = self.bins[_bin(chunk.size)]
        del entries[bisect.bisect_left(entries, (chunk.size, chunk.addr))]
        del self.free_chunks[chunk.addr]
        chunk.free = False

    def _find(self, rounded: int) -> _Chunk | None:
        for entries in self.bins[_bin(rounded) :]:
            i = bisect.bisect_left(entries, (rounded,))
            if i == len(entries):
                continue
            chunk = self.free_chunks[entries[i][1]]
            self._take_free(chunk)
            slack = chunk.size - rounded
            if chunk.size >= 2 * rounded or slack >= BFC_MAX_INTERNAL_FRAGMENTATION:
                rest = _Chunk(
                    chunk.addr + rounded, slack, chunk.region_end, True, chunk, chunk.next
                )
                if chunk.next is not None:
                    chunk.next.prev = rest
                chunk.next, chunk.size = rest, rounded
                self._add_free(rest)
            return chunk
        return None

    def _extend(self, rounded: int) -> None:
        grown = False
        while rounded > self.region_bytes:
            self.region_bytes *= 2
            grown = True
        # the sub-allocator's regions come from mmap, which hands out addresses top-down:
        # every new region lies below the earlier ones (and is never merged with them)
        self.next_region -= 2 * self.region_bytes
        start = self.next_region
        self._add_free(_Chunk(start, self.region_bytes, start + self.region_bytes))
        if not grown:
            self.region_bytes *= 2

    def allocate(self, size: int) -> _Chunk:
        rounded = align_up(max(size, 1), BFC_ALIGNMENT)
        chunk = self._find(rounded)
        if chunk is None:
            self._extend(rounded)
            chunk = self._find(rounded)
            assert chunk is not None
        self.in_use += chunk.size
        return chunk

    def release(self, chunk: _Chunk) -> None:
        self.in_use -= chunk.size
        chunk.tensor = -1
        after = chunk.next
        if after is not None and after.free:
            self._take_free(after)
            chunk.size += after.size
            chunk.next = after.next
            if after.next is not None:
                after.next.prev = chunk
        before = chunk.prev
        if before is not None and before.free:
            self._take_free(before)
            before.size += chunk.size
            before.next = chunk.next
            if chunk.next is not None:
                chunk.next.prev = before
            chunk = before
        self._add_free(chunk)


# ---------------------------------------------------------------------------------------
# The allocation sequence


@dataclass(slots=True)
class _Tensor:
    size: int  # requested bytes
    layer: int  # index into the rows (0: input, i + 1: layer i)
    category: Category
    per_sample: bool  # the size is batch x something


@dataclass
class _Trace:
    """Tensors and the order in which they are allocated and freed."""

    tensors: list[_Tensor] = field(default_factory=list)
    events: list[int] = field(default_factory=list)  # t: allocate tensor t, ~t: free it
    measured_from: int = 0  # index of the first event of the measured step

    def alloc(self, size: int, row: int, category: Category, per_sample: bool = False) -> int:
        self.tensors.append(_Tensor(size, row, category, per_sample))
        self.events.append(len(self.tensors) - 1)
        return len(self.tensors) - 1

    def free(self, tensor: int | None) -> None:
        if tensor is not None:
            self.events.append(~tensor)


def _loss_constants(plan: _Plan) -> list[int]:
    """Sizes of the loss gradient's constant-folded tensors (read off traces): binary
    cross-entropy folds three prediction-sized ones (logistic_loss/zeros_like, truediv,
    logistic_loss/sub/Neg), categorical cross-entropy one batch x 1 (ExpandDims); the
    other losses were not traced and get none."""
    batch = plan.model.batch
    if plan.model.loss == "binary_crossentropy":
        return [batch * plan.layers[-1].out_features * FLOAT32] * 3
    if plan.model.loss == "categorical_crossentropy":
        return [batch * FLOAT32]
    return []


def _variables(layer: ResolvedLayer) -> tuple[list[int], list[int]]:
    """Trainable and non-trainable variable sizes (values), in creation order."""
    spec = layer.spec
    if spec.type == "dense":
        sizes = [layer.in_features * spec.units]
        return ([*sizes, spec.units]) if spec.use_bias else sizes, []
    if spec.type == "embedding":
        return [spec.input_dim * spec.output_dim], []
    if spec.type == "batch_norm":
        return [layer.out_features] * 2, [layer.out_features] * 2
    if spec.type == "layer_norm":
        return [layer.out_features] * 2, []
    return [], []


@dataclass
class _Plan:
    model: ModelSpec
    layers: list[ResolvedLayer]
    rewritten: int | None  # batch norm whose input-gradient AddN grappler rewrites

    @property
    def mixed(self) -> bool:
        return self.model.precision == "mixed"

    @property
    def compute(self) -> int:
        return FLOAT16 if self.mixed else FLOAT32

    def out_bytes(self, i: int) -> int:
        final = i == len(self.layers) - 1
        dtype = FLOAT32 if final else self.compute  # mixed: final activation in float32
        return self.model.batch * self.layers[i].out_features * dtype

    def needs_output(self, i: int) -> bool:
        if i == len(self.layers) - 1 and self.fused_softmax_loss:
            return False  # the logits are kept to the end of the step (loss_gradient)
        return getattr(self.layers[i].spec, "activation", "linear") in OUTPUT_NEEDING

    @property
    def fused_softmax_loss(self) -> bool:
        last = self.layers[-1].spec
        return (
            self.model.loss == "categorical_crossentropy"
            and getattr(last, "activation", "linear") == "softmax"
        )


class _Generator:
    """Emits the process's allocations: build, optimizer slots, warm-up and measured step."""

    def __init__(self, plan: _Plan) -> None:
        self.p = plan
        self.t = _Trace()
        self.slots: dict[tuple[int, int, int], int] = {}  # (layer, variable, slot) -> tensor
        self.velocities: dict[tuple[int, int], int] = {}  # momentum: m * momentum, early
        self.weights: list[list[tuple[int, int]]] = []  # per layer: (size, tensor)

    def run(self) -> _Trace:
        t, p = self.t, self.p
        t.alloc(BFC_ALIGNMENT, 0, "ephemeral")  # the runtime's first small tensors
        for i, layer in enumerate(p.layers):
            trainable, frozen = _variables(layer)
            row = []
            for n, size in enumerate(trainable + frozen):
                nbytes = size * FLOAT32
                if n == 0 and layer.type in ("dense", "embedding"):
                    sample, scaled = t.alloc(nbytes, i + 1, "ephemeral"), 0
                    scaled = t.alloc(nbytes, i + 1, "ephemeral")
                    variable = t.alloc(nbytes, i + 1, "weights")
                    t.free(scaled)
                    t.free(sample)
                else:
                    variable = t.alloc(nbytes, i + 1, "weights")
                t.alloc(VARIABLE_HANDLE_BYTES, i + 1, "ephemeral")  # its resource handle
                if n < len(trainable):
                    row.append((nbytes, variable))
            self.weights.append(row)
        slots = OPTIMIZER_SLOTS[p.model.optimizer]
        for i, row in enumerate(self.weights):  # built eagerly: one zeros buffer per slot
            for n, (size, _) in enumerate(row):
                for s in range(slots):
                    self.slots[(i, n, s)] = t.alloc(size, i + 1, "optimizer")
                    t.alloc(VARIABLE_HANDLE_BYTES, i + 1, "ephemeral")
        batch = p.model.batch
        t.alloc(batch * p.model.input_size * FLOAT32, 0, "ephemeral", True)  # x
        labels = 1 if p.model.loss == "sparse_categorical_crossentropy" else None
        width = labels or p.layers[-1].out_features
        t.alloc(batch * width * FLOAT32, 0, "ephemeral", True)  # y
        self.graph_constants()
        for _ in range(WARM_UP_STEPS):
            self.step()
        t.measured_from = len(t.events)
        for _ in range(MEASURED_STEPS):
            self.step()
        return t

    def graph_constants(self) -> None:
        """The step function's constants, allocated when its graph is instantiated (before
        the first step) and kept: small ones first, then the loss's constant-folded
        prediction-sized tensors, then the zeros of a rewritten AddN."""
        t, p = self.t, self.p
        for _ in range(GRAPH_SMALL_CONSTANTS):
            t.alloc(BFC_ALIGNMENT, 0, "ephemeral")
        for size in _loss_constants(p):
            t.alloc(size, len(p.layers), "ephemeral", True)
        if p.rewritten is not None:  # the folded zeros constant of the rewritten AddN
            width_bytes = p.model.batch * p.layers[p.rewritten].out_features * FLOAT32
            t.alloc(width_bytes, p.rewritten + 1, "ephemeral", True)

    def update(self, i: int, n: int, gradient: int, copy_variable: bool = False) -> int | None:
        """Gradient (already allocated) -> float32 gradient -> optimizer update.

        `copy_variable`: the variable's buffer is still read (the default executor computes
        the input gradient after the update), so the update copies it; the old buffer is
        returned, to be freed once the input gradient exists.
        """
        t, p = self.t, self.p
        size, variable = self.weights[i][n]
        row = i + 1
        old = None
        if p.model.optimizer == "momentum":
            # m * momentum was computed at the start of the step (it needs no gradient);
            # lr * g is subtracted in place and the result becomes the slot's buffer
            t.free(t.alloc(size, row, "ephemeral"))  # lr * g
            self.release_slot(i, n, 0)
            self.slots[(i, n, 0)] = self.velocities.pop((i, n))
            if copy_variable:
                old, self.weights[i][n] = variable, (size, t.alloc(size, row, "weights"))
            t.free(gradient)
            return old
        first = t.alloc(size, row, "ephemeral")  # Adam: g - m (g^2); SGD: lr * g
        if UPDATE_TEMPORARIES[p.model.optimizer] == 1:
            if copy_variable:
                old, self.weights[i][n] = variable, (size, t.alloc(size, row, "weights"))
            t.free(first)
            t.free(gradient)
            return old
        t.free(first)
        second = t.alloc(size, row, "ephemeral")  # g^2 - v (sqrt(v))
        t.free(gradient)
        third = t.alloc(size, row, "ephemeral")  # sqrt(v) (the step)
        if copy_variable:
            t.free(second)
            old, self.weights[i][n] = variable, (size, t.alloc(size, row, "weights"))
            t.free(third)
        else:
            t.free(third)
            t.free(second)
        return old

    def release_slot(self, i: int, n: int, slot: int) -> None:
        """A slot's buffer is replaced (momentum's new velocity): free the old one."""
        self.t.free(self.slots[(i, n, slot)])

    def loss_gradient(self) -> int | None:
        """The turn from forward to backward: the loss's temporaries, then the gradient of
        the prediction (the backward pass's first input).

        Softmax + categorical cross-entropy: Keras hands the softmax's logits to TF's
        fused SoftmaxCrossEntropyWithLogits (grappler prunes the unused softmax), which
        makes only batch-sized tensors and writes the logits' gradient into a forwarded
        buffer: no prediction-sized allocation, and the logits stay to the end of the
        step (traced: ae k=2 B=2048, ae k=6 B=256)."""
        t, p = self.t, self.p
        row = len(p.layers)  # the loss row, after the last layer
        if p.fused_softmax_loss:
            loss = t.alloc(p.model.batch * FLOAT32, row, "ephemeral", True)
            t.free(t.alloc(p.model.batch * FLOAT32, row, "ephemeral", True))
            t.free(loss)
            return None
        prediction = p.model.batch * p.layers[-1].out_features * FLOAT32
        for _ in range(LOSS_TEMPORARIES):
            t.free(t.alloc(prediction, row, "ephemeral", True))
        return t.alloc(prediction, row, "ephemeral", True)

    def step(self) -> None:
        if self.p.mixed:
            self.step_mixed()
            return
        t, p = self.t, self.p
        batch, layers = p.model.batch, p.layers
        last = len(layers) - 1
        self.start_momentum()
        outputs: list[int | None] = []
        kernels16: list[int | None] = []
        casts: list[int | None] = []
        small: list[int] = []  # forward_small's tensors, kept to the end of the step
        for i, layer in enumerate(layers):
            row = i + 1
            kernels16.append(None)
            casts.append(None)
            if layer.type in NORMALISATIONS:
                if p.mixed:
                    casts[i] = t.alloc(
                        batch * layer.in_features * FLOAT32, row, "activations", True
                    )
                square = t.alloc(batch * layer.in_features * FLOAT32, row, "ephemeral", True)
                t.free(square)
            elif layer.type == "dense" and p.mixed:
                size = self.weights[i][0][0] // FLOAT32 * FLOAT16
                kernels16[i] = t.alloc(size, row, "activations")
            small += self.forward_small(i)
            outputs.append(t.alloc(p.out_bytes(i), row, "activations", True))
        gradient: int | None = self.loss_gradient()
        early: dict[int, list[int]] = {}  # normalisation backward tensors allocated early
        tmp_var: int | None = None
        # the single-threaded executor refuses the reference-typed edges of grappler's
        # rewrite; profilers.allocator then runs the default executor, whose order differs
        default_order = p.rewritten is not None
        late: list[int] = []  # default executor: buffers freed at the end of the step
        for i in range(last, -1, -1):
            layer, row = layers[i], i + 1
            width_in = batch * layer.in_features
            if self.p.needs_output(i) or (i == last and not p.fused_softmax_loss):
                t.free(outputs[i])  # read by its own gradient (in place into the gradient)
                outputs[i] = None
            below = i - 1 if i > 0 else None
            if layer.type in ("dense", "embedding") and default_order:
                olds = []
                for n, (size, _) in enumerate(list(self.weights[i])):
                    grad_bytes = size // FLOAT32 * (p.compute if n == 0 else FLOAT32)
                    weight_gradient = t.alloc(grad_bytes, row, "gradients")
                    if n == 0 and below is not None and not p.needs_output(below):
                        t.free(outputs[below])
                        outputs[below] = None
                    olds.append(self.update(i, n, weight_gradient, n == 0 and i > 0))
                dx = t.alloc(width_in * p.compute, row, "gradients", True) if i > 0 else None
                for old in olds:
                    t.free(old)
                t.free(kernels16[i])
                if gradient != tmp_var and gradient not in late:
                    t.free(gradient)
                gradient = dx
            elif layer.type in ("dense", "embedding"):
                dx = t.alloc(width_in * p.compute, row, "gradients", True) if i > 0 else None
                if below is not None and layers[below].type in NORMALISATIONS:
                    early[below] = [
                        t.alloc(width_in * FLOAT32, row - 1, "gradients", True),
                        t.alloc(width_in * FLOAT32, row - 1, "ephemeral", True),
                    ]
                for n, (size, _) in enumerate(list(self.weights[i])):
                    grad_bytes = size // FLOAT32 * (p.compute if n == 0 else FLOAT32)
                    weight_gradient = t.alloc(grad_bytes, row, "gradients")
                    if n == 0:
                        if below is not None and not p.needs_output(below):
                            t.free(outputs[below])
                            outputs[below] = None
                        t.free(gradient)
                        gradient = None
                    self.update(i, n, weight_gradient)
                t.free(kernels16[i])
                t.free(gradient)
                gradient = dx
            elif layer.type in NORMALISATIONS:
                # the default executor computes the scale's gradient first (dy * x, a
                # temporary reduced at once); the gradient through the normalisation and
                # the sum of the three input gradients then reuse dy's buffer in place,
                # which lives to the end of the step; with the rewrite the sum goes to the
                # temporary variable instead
                in_place = default_order and i != p.rewritten and gradient is not None
                if i in early:
                    through, tile = early.pop(i)
                    if i == p.rewritten:
                        t.free(through)
                else:
                    through = t.alloc(width_in * FLOAT32, row, "gradients", True)
                    if i == p.rewritten or in_place:
                        t.free(through)
                    tile = t.alloc(width_in * FLOAT32, row, "ephemeral", True)
                if not default_order:
                    t.free(gradient)
                held = [tile]
                for _ in range(BATCH_NORM_MOMENT_TEMPORARIES - 1):
                    held.append(t.alloc(width_in * FLOAT32, row, "ephemeral", True))
                t.free(held.pop())
                if i == p.rewritten:  # lives to the end of the step
                    tmp_var = through = t.alloc(width_in * FLOAT32, row, "gradients", True)
                for tensor in held:
                    t.free(tensor)
                if in_place and gradient is not None and gradient != tmp_var:
                    through = gradient
                    late.append(gradient)
                elif default_order and gradient != tmp_var:
                    t.free(gradient)
                for n, (size, _) in enumerate(self.weights[i]):
                    self.update(i, n, t.alloc(size, row, "gradients"))
                t.free(casts[i])
                if below is not None and not p.needs_output(below):
                    t.free(outputs[below])
                    outputs[below] = None
                if p.mixed:
                    dx16 = t.alloc(width_in * p.compute, row, "gradients", True)
                    t.free(through)
                    through = dx16
                if i > 0:
                    gradient = through
                elif through != tmp_var and through not in late:
                    t.free(through)
            else:
                dx = t.alloc(width_in * p.compute, row, "gradients", True) if i > 0 else None
                if gradient != tmp_var:
                    t.free(gradient)
                if below is not None and not p.needs_output(below):
                    t.free(outputs[below])
                    outputs[below] = None
                gradient = dx
        if gradient != tmp_var and gradient not in late:
            t.free(gradient)
        for tensor in reversed(late):
            t.free(tensor)
        t.free(tmp_var)
        for kept in outputs:
            t.free(kept)
        for tensor in small:
            t.free(tensor)

    def forward_small(self, i: int) -> list[int]:
        """Small tensors a layer's forward pass keeps for its backward pass: batch norm's
        statistics (mean, variance, variance + epsilon, the scale and shift vectors, the
        moving-average update: BATCH_NORM_STATISTICS vectors of its width, float32) and
        the complex channel's two random matrices (batch x nr x nt). A few hundred KiB,
        they split big free chunks, which then hand out 16 MiB tensors whole (tanh-bae
        k=6 nt=2 B=2048 measures 310M; without them the model read 292.6M)."""
        t, p = self.t, self.p
        layer, row = p.layers[i], i + 1
        if layer.type == "batch_norm":
            width = layer.out_features * FLOAT32
            return [t.alloc(width, row, "ephemeral") for _ in range(BATCH_NORM_STATISTICS)]
        if layer.type == "complex_channel":
            spec = layer.spec
            uses = getattr(spec, "uses", 1)
            nt = layer.in_features // (2 * uses)
            size = p.model.batch * getattr(spec, "nr", nt) * nt * p.compute
            return [t.alloc(size, row, "ephemeral", True) for _ in range(2)]
        return []

    def matmul16(self, row: int, sizes: tuple[int, int, int], per_sample: tuple[bool, ...]) -> None:
        """A float16 MatMul on the CPU runs in float32: both operands and the result are
        converted (three float32 temporaries, freed once the float16 result exists)."""
        held = [
            self.t.alloc(size * FLOAT32, row, "ephemeral", flag)
            for size, flag in zip(sizes, per_sample, strict=True)
        ]
        for tensor in reversed(held):
            self.t.free(tensor)

    def start_momentum(self) -> None:
        """Momentum's m * momentum needs no gradient: the executor runs it first."""
        if self.p.model.optimizer == "momentum":
            for i, owned in enumerate(self.weights):
                for n, (size, _) in enumerate(owned):
                    self.velocities[(i, n)] = self.t.alloc(size, i + 1, "optimizer")

    def step_mixed(self) -> None:
        """Mixed precision: float16 casts of the kernels (made at the start of the step,
        they need no activation), float16 MatMuls through float32 temporaries, batch norm
        in float32 between casts, the kernel gradient cast to float32 before its update.

        Traces also showed processes (other graph orders) that compute every input
        gradient first and all kernel gradients at the end (a lower peak); the order
        modelled is the one most runs measured.
        """
        t, p = self.t, self.p
        batch, layers = p.model.batch, p.layers
        last = len(layers) - 1
        dense = ("dense", "embedding")
        self.start_momentum()
        kernels16: dict[int, int] = {}
        for i, layer in enumerate(layers):  # ready at the start: no activation needed
            if layer.type in dense:
                size = self.weights[i][0][0] // FLOAT32 * FLOAT16
                kernels16[i] = t.alloc(size, i + 1, "activations")
        outputs: list[int | None] = []
        casts: dict[int, int] = {}
        small: list[int] = []  # forward_small's tensors, kept to the end of the step
        for i, layer in enumerate(layers):
            row, width_in = i + 1, batch * layer.in_features
            width_out = batch * layer.out_features
            if layer.type in NORMALISATIONS:  # computed in float32
                casts[i] = t.alloc(width_in * FLOAT32, row, "activations", True)
                t.free(t.alloc(width_in * FLOAT32, row, "ephemeral", True))  # squared diff.
                small += self.forward_small(i)
                result = t.alloc(width_out * FLOAT32, row, "ephemeral", True)
                outputs.append(t.alloc(p.out_bytes(i), row, "activations", True))
                t.free(result)
            elif layer.type == "dense":
                outputs.append(t.alloc(p.out_bytes(i), row, "activations", True))
                size = self.weights[i][0][0] // FLOAT32
                self.matmul16(row, (width_in, size, width_out), (True, False, True))
            else:
                small += self.forward_small(i)
                outputs.append(t.alloc(p.out_bytes(i), row, "activations", True))
        gradient: int | None = self.loss_gradient()
        early: dict[int, list[int]] = {}  # normalisation backward tensors allocated early
        tmp_var: int | None = None
        default_order = p.rewritten is not None  # see step()
        for i in range(last, -1, -1):
            layer, row = layers[i], i + 1
            width_in = batch * layer.in_features
            if p.needs_output(i) or (i == last and not p.fused_softmax_loss):
                t.free(outputs[i])
                outputs[i] = None
            below = i - 1 if i > 0 else None
            if layer.type in dense and default_order:  # kernel gradient and update first
                size = self.weights[i][0][0] // FLOAT32
                width_out = batch * layer.out_features
                as_float16 = t.alloc(size * FLOAT16, row, "gradients")
                self.matmul16(row, (width_in, width_out, size), (True, True, False))
                if below is not None and not p.needs_output(below):
                    t.free(outputs[below])
                    outputs[below] = None
                kernel_gradient = t.alloc(size * FLOAT32, row, "gradients")
                t.free(as_float16)
                self.update(i, 0, kernel_gradient)
                for n in range(1, len(self.weights[i])):
                    bias = t.alloc(self.weights[i][n][0], row, "gradients")
                    self.update(i, n, bias)
                dx = None
                if i > 0:
                    dx = t.alloc(width_in * FLOAT16, row, "gradients", True)
                    self.matmul16(row, (width_out, size, width_in), (True, False, True))
                t.free(kernels16.pop(i))
                if gradient != tmp_var:
                    t.free(gradient)
                gradient = dx
            elif layer.type in dense:
                size = self.weights[i][0][0] // FLOAT32
                width_out = batch * layer.out_features
                dx = None
                if i > 0:
                    dx = t.alloc(width_in * FLOAT16, row, "gradients", True)
                    self.matmul16(row, (width_out, size, width_in), (True, False, True))
                t.free(kernels16.pop(i))
                if below is not None and layers[below].type in NORMALISATIONS:
                    early[below] = [  # the executor's order, as in float32
                        t.alloc(width_in * FLOAT32, row - 1, "ephemeral", True),
                        t.alloc(width_in * FLOAT32, row - 1, "gradients", True),
                        t.alloc(width_in * FLOAT32, row - 1, "ephemeral", True),
                    ]
                as_float16 = t.alloc(size * FLOAT16, row, "gradients")
                self.matmul16(row, (width_in, width_out, size), (True, True, False))
                if below is not None and not p.needs_output(below):
                    t.free(outputs[below])
                    outputs[below] = None
                t.free(gradient)
                kernel_gradient = t.alloc(size * FLOAT32, row, "gradients")
                t.free(as_float16)
                self.update(i, 0, kernel_gradient)
                for n in range(1, len(self.weights[i])):
                    bias = t.alloc(self.weights[i][n][0], row, "gradients")
                    self.update(i, n, bias)
                gradient = dx
            elif layer.type in NORMALISATIONS:
                if i in early:
                    as_float32, through, tile = early.pop(i)
                else:
                    as_float32 = t.alloc(width_in * FLOAT32, row, "ephemeral", True)
                    if gradient != tmp_var:
                        t.free(gradient)  # the incoming float16 gradient, now cast
                    gradient = None
                    through = t.alloc(width_in * FLOAT32, row, "gradients", True)
                    if i == p.rewritten:  # summed into the temporary variable instead
                        t.free(through)
                    tile = t.alloc(width_in * FLOAT32, row, "ephemeral", True)
                if gradient is not None and gradient != tmp_var:
                    t.free(gradient)
                if not default_order:
                    t.free(as_float32)
                if i == p.rewritten and not default_order:
                    t.free(through)
                tile_1 = t.alloc(width_in * FLOAT32, row, "ephemeral", True)
                t.free(casts.pop(i))
                t.free(tile_1)
                t.free(tile)
                if default_order:
                    t.free(as_float32)
                if i == p.rewritten:  # lives to the end of the step
                    tmp_var = through = t.alloc(width_in * FLOAT32, row, "gradients", True)
                for n, (size, _) in enumerate(self.weights[i]):
                    self.update(i, n, t.alloc(size * FLOAT32, row, "gradients"))
                gradient = t.alloc(width_in * FLOAT16, row, "gradients", True) if i else None
                t.free(through)  # read by its float16 cast only, the temporary variable too
                if through == tmp_var:
                    tmp_var = None
                if below is not None and not p.needs_output(below):
                    t.free(outputs[below])
                    outputs[below] = None
            else:
                dx = t.alloc(width_in * p.compute, row, "gradients", True) if i > 0 else None
                t.free(gradient)
                if below is not None and not p.needs_output(below):
                    t.free(outputs[below])
                    outputs[below] = None
                gradient = dx
        t.free(gradient)
        t.free(tmp_var)
        for kept in outputs:
            t.free(kept)
        for tensor in casts.values():
            t.free(tensor)
        for tensor in small:
            t.free(tensor)


@dataclass
class _Peak:
    bytes: int
    live: list[tuple[int, int]]  # (tensor, chunk bytes)
    trigger: int  # the tensor whose allocation reached the peak


def _simulate(trace: _Trace) -> _Peak:
    """Run the trace through the allocator; the live chunks at the measured peak."""
    bfc = _Bfc()
    chunks: dict[int, _Chunk] = {}
    peak, at, live = -1, -1, []
    for n, event in enumerate(trace.events):
        if event >= 0:
            chunks[event] = bfc.allocate(trace.tensors[event].size)
            if n >= trace.measured_from and bfc.in_use > peak:
                peak, at = bfc.in_use, n
                live = [(tensor, chunk.size) for tensor, chunk in chunks.items()]
        elif ~event in chunks:
            bfc.release(chunks.pop(~event))
    return _Peak(peak, live, trace.events[at])


# ---------------------------------------------------------------------------------------
# grappler's AddN rewrite


def _static_peak(plan: _Plan) -> tuple[int, int | None]:
    """Grappler's static estimate of the step's peak, and the batch norm it holds.

    The estimate (GraphMemory::InferStatically) simulates the graph without in-place
    updates and without Keras' interleaving of updates with the backward pass: every
    trainable variable's read, its gradient and its optimizer temporaries are counted as
    alive together, on top of the largest transient moment of the backward pass.
    """
    batch, layers = plan.model.batch, plan.layers
    per_weight = FLOAT32 + plan.compute + UPDATE_TEMPORARIES[plan.model.optimizer] * FLOAT32
    weights = sum(size for row in map(_variables, layers) for size in row[0]) * per_weight
    kept = [plan.out_bytes(i) for i in range(len(layers))]
    prediction = batch * layers[-1].out_features * FLOAT32
    best = sum(kept) + (LOSS_TEMPORARIES + 1) * prediction
    holder, held = None, 0
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        alive = sum(kept[: i + 1]) + batch * layer.out_features * plan.compute
        if layer.type in NORMALISATIONS:
            alive += (BATCH_NORM_MOMENT_TEMPORARIES + 1) * batch * layer.in_features * FLOAT32
            if alive > held:  # its input-gradient AddN's inputs are alive here
                holder, held = i, alive
        elif layer.type in ("dense", "embedding"):
            alive += batch * layer.in_features * plan.compute
        best = max(best, alive)
    return best + weights, holder


def _rewritten(model: ModelSpec, layers: list[ResolvedLayer], memory_limit: int) -> int | None:
    plan = _Plan(model, layers, None)
    peak, holder = _static_peak(plan)
    if peak <= GRAPPLER_MEMORY_PRESSURE * memory_limit:
        return None
    return holder


# ---------------------------------------------------------------------------------------
# The cost model


class FrameworkCostModel:
    """Per-layer bytes alive at the allocator peak of a TF/Keras training step."""

    name = "framework"
    alignment = BFC_ALIGNMENT
    decoder_blocks: int | None = None  # families expand with Table 1's 3 blocks
    batch_invariant = False  # the peak moment moves with the batch

    def __init__(self, device_memory_limit: int = CPU_DEVICE_MEMORY_LIMIT) -> None:
        self.device_memory_limit = device_memory_limit

    def rows(self, model: ModelSpec, layers: list[ResolvedLayer]) -> list[CostRow]:
        plan = _Plan(model, layers, _rewritten(model, layers, self.device_memory_limit))
        trace = _Generator(plan).run()
        peak = _simulate(trace)
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
        return rows

    def resident_bytes(self) -> int:
        return RESIDENT_BYTES
