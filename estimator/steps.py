"""The allocations of a Keras training process, in the order TensorFlow makes them.

`StepGenerator` emits, as a `Trace`, what profilers/allocator.py's measurement makes the
allocator do: the model's build, the optimizer's slots, the step graph's constants, the
warm-up steps and the measured steps. One step skeleton serves both precisions: the forward
pass runs each layer's forward rule, the loss turns to the backward pass, and each layer's
backward rule runs, last layer first. What mixed precision adds is said where it happens
(the float16 casts and the float32 detours of CPU kernels). The sequence was read off BFC
allocator traces (`python -m profilers.trace record`); each mechanism names its trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from estimator.bfc import BFC_ALIGNMENT
from estimator.costs import Category

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

FLOAT32 = 4
FLOAT16 = 2
OPTIMIZER_SLOTS = {"adam": 2, "momentum": 1, "sgd": 0, "none": 0}
# Update temporaries per variable, allocated one after another. Keras' SGD computes
# `variable - gradient * lr`: the Mul is the gradient's only reader, so TF's cwise kernel
# forwards the gradient's buffer to its output (forward_input_or_allocate_output) and the
# update allocates nothing (trace: bae k=2 nt=2 B=1 none, no 16 MiB allocation between
# dense_10's MatMul_1 kernel gradient and its free).
UPDATE_TEMPORARIES = {"adam": 3, "momentum": 0, "sgd": 0, "none": 0}
BATCH_NORM_MOMENT_TEMPORARIES = 3  # Tile, Tile_1, sub
BATCH_NORM_STATISTICS = 6  # mean, variance, batchnorm/add, batchnorm/mul, mul, mul_2
LOSS_TEMPORARIES = 2  # prediction-sized temporaries of the loss
WARM_UP_STEPS = 3  # as profilers.allocator.WARM_UP_STEPS: the first creates the slots
MEASURED_STEPS = 2  # steps after the warm-up whose largest peak is reported
OUTPUT_NEEDING = ("relu", "sigmoid", "tanh", "softmax")  # gradients that read the output
NORMALISATIONS = ("batch_norm", "layer_norm")
MATMULS = ("dense", "embedding")  # layers whose kernel gradient is a MatMul
UNIFORM_KERNELS = (*MATMULS, "conv2d")  # kernels drawn by Keras' glorot_uniform
GRAPH_SMALL_CONSTANTS = 35  # the step graph's small constants (traced bae/ae graphs: 35-37)
VARIABLE_HANDLE_BYTES = 200  # a resource handle (VarHandleOp's output), one per variable


@dataclass(slots=True)
class Tensor:
    size: int  # requested bytes
    layer: int  # index into the rows (0: input, i + 1: layer i)
    category: Category
    per_sample: bool  # the size is batch x something


@dataclass
class Trace:
    """Tensors and the order in which they are allocated and freed."""

    tensors: list[Tensor] = field(default_factory=list)
    events: list[int] = field(default_factory=list)  # t: allocate tensor t, ~t: free it
    steps_from: int = 0  # index of the first event of the first (warm-up) step
    measured_from: int = 0  # index of the first event of the measured steps
    step_starts: list[int] = field(default_factory=list)  # first event of each measured step

    def alloc(self, size: int, row: int, category: Category, per_sample: bool = False) -> int:
        self.tensors.append(Tensor(size, row, category, per_sample))
        self.events.append(len(self.tensors) - 1)
        return len(self.tensors) - 1

    def free(self, tensor: int | None) -> None:
        """Free a tensor; None, or a tensor already freed, is a no-op when replayed."""
        if tensor is not None:
            self.events.append(~tensor)


def variables(layer: ResolvedLayer) -> tuple[list[int], list[int]]:
    """Trainable and non-trainable variable sizes (values), in creation order."""
    spec = layer.spec
    if spec.type == "dense":
        sizes = [layer.in_features * spec.units]
        return ([*sizes, spec.units]) if spec.use_bias else sizes, []
    if spec.type == "embedding":
        return [spec.input_dim * spec.output_dim], []
    channels = layer.out_shape[-1] if layer.out_shape else layer.out_features
    if spec.type == "batch_norm":  # per channel (the last axis), as Keras
        return [channels] * 2, [channels] * 2
    if spec.type == "layer_norm":
        return [channels] * 2, []
    if spec.type == "conv2d":  # kernel (k x k x channels in x filters), bias
        sizes = [spec.kernel * spec.kernel * layer.in_shape[-1] * spec.filters]
        return ([*sizes, spec.filters]) if spec.use_bias else sizes, []
    return [], []


@dataclass
class StepPlan:
    """A model as the step sees it: its layers, precision and grappler's rewrite."""

    model: ModelSpec
    layers: list[ResolvedLayer]
    rewritten: int | None  # batch norm whose input-gradient AddN grappler rewrites
    # matmul layers whose backward runs opposite to the executor's usual order (see
    # matmul_backward): an order the executor may also pick, for the upper bound
    flipped: frozenset[int] = frozenset()
    # whether a float16 MatMul is computed through float32 copies (the CPU kernel path:
    # see estimator.framework.float16_matmul_in_float32)
    float16_via_float32: bool = True

    @property
    def mixed(self) -> bool:
        return self.model.precision == "mixed"

    @property
    def compute(self) -> int:
        """Bytes per value of the activations and of the MatMuls' results."""
        return FLOAT16 if self.mixed else FLOAT32

    @property
    def default_executor(self) -> bool:
        """The single-threaded executor refuses the reference-typed edges of grappler's
        rewrite; profilers.allocator then runs the default executor, whose order differs."""
        return self.rewritten is not None

    def kernel_first(self, i: int) -> bool:
        """Whether layer i's kernel gradient and update run before its input gradient."""
        return self.default_executor != (i in self.flipped)

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
            self.model.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy")
            and getattr(last, "activation", "linear") == "softmax"
        )

    def loss_constants(self) -> list[int]:
        """Sizes of the loss gradient's constant-folded tensors (read off traces): binary
        cross-entropy folds three prediction-sized ones (logistic_loss/zeros_like, truediv,
        logistic_loss/sub/Neg), categorical cross-entropy one batch x 1 (ExpandDims); the
        mean squared error one prediction-sized (the mean's gradient, 2 / N broadcast:
        `mse/Mul`, alive at every step of generic real29 [d110sigm,layer_norm,d29line] B=333),
        the other losses were not traced and get none."""
        batch = self.model.batch
        if self.model.loss == "binary_crossentropy":
            return [batch * self.layers[-1].out_features * FLOAT32] * 3
        if self.model.loss == "mse":  # 2 / N broadcast to the prediction (mse/Mul)
            return [batch * self.layers[-1].out_features * FLOAT32]
        if self.model.loss == "categorical_crossentropy":
            return [batch * FLOAT32]
        return []


class StepGenerator:
    """Emits the process's allocations: build, optimizer slots, warm-up and measured steps."""

    def __init__(self, plan: StepPlan) -> None:
        self.p = plan
        self.t = Trace()
        self.slots: dict[tuple[int, int, int], int] = {}  # (layer, variable, slot) -> tensor
        self.velocities: dict[tuple[int, int], int] = {}  # momentum: m * momentum, early
        self.weights: list[list[tuple[int, int]]] = []  # per layer: (bytes, tensor)
        self._backward: dict[str, Callable[[int, int | None], int | None]] = {
            "dense": self.matmul_backward,
            "embedding": self.matmul_backward,
            "batch_norm": self.norm_backward,
            "layer_norm": self.any_layer_norm_backward,
        }
        self._reset_step()

    def _reset_step(self) -> None:
        self.outputs: list[int | None] = []  # each layer's output, kept for the backward
        self.kernels16: dict[int, int] = {}  # mixed: float16 casts of the kernels
        self.casts: dict[int, int] = {}  # mixed: normalisations' float32 input casts
        self.scales: dict[int, int] = {}  # layer norms' per-sample scales (see forward)
        self.small: list[int] = []  # forward_small's tensors, kept to the end of the step
        self.early: dict[int, list[int | None]] = {}  # normalisation backward heads
        self.tmp_var: int | None = None  # grappler's temporary variable (rewritten AddN)
        self.late: list[int] = []  # default executor: buffers freed at the end of the step
        self.deferred: list[tuple[int, int | None]] = []  # kernel gradients run at the end
        self.finishing: list[tuple[int, int | None]] = []
        self.late_gradients: list[int | None] = []  # read by deferred parameter gradients

    # -- the process -----------------------------------------------------------------

    def run(self) -> Trace:
        t, p = self.t, self.p
        t.alloc(BFC_ALIGNMENT, 0, "ephemeral")  # the runtime's first small tensors
        self.build()
        batch = p.model.batch
        t.alloc(batch * p.model.input_size * FLOAT32, 0, "ephemeral", True)  # x
        labels = 1 if p.model.loss == "sparse_categorical_crossentropy" else None
        width = labels or p.layers[-1].out_features
        t.alloc(batch * width * FLOAT32, 0, "ephemeral", True)  # y
        self.graph_constants()
        t.steps_from = len(t.events)
        for _ in range(WARM_UP_STEPS):
            self.step()
        t.measured_from = len(t.events)
        for _ in range(MEASURED_STEPS):
            t.step_starts.append(len(t.events))
            self.step()
        return t

    def build(self) -> None:
        """The model's variables in layer order, then the optimizer's slots.

        A Dense/Embedding kernel is drawn by Keras' uniform initialiser: a uniform sample,
        its product with the range and the sum with the minimum are three kernel-sized
        tensors; the sum becomes the variable. Other variables are filled tensors. Every
        variable's resource handle follows its value and stays. The optimizer is built
        eagerly by profilers.builders: one zeros buffer per slot, in variable order; weights
        and slots stay float32 with mixed precision.
        """
        t, p = self.t, self.p
        for i, layer in enumerate(p.layers):
            trainable, frozen = variables(layer)
            row = []
            for n, size in enumerate(trainable + frozen):
                nbytes = size * FLOAT32
                if n == 0 and layer.type in UNIFORM_KERNELS:
                    sample = t.alloc(nbytes, i + 1, "ephemeral")
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
        for i, row in enumerate(self.weights):
            for n, (size, _) in enumerate(row):
                for s in range(OPTIMIZER_SLOTS[p.model.optimizer]):
                    self.slots[(i, n, s)] = t.alloc(size, i + 1, "optimizer")
                    t.alloc(VARIABLE_HANDLE_BYTES, i + 1, "ephemeral")

    def graph_constants(self) -> None:
        """The step function's constants, allocated when its graph is instantiated (before
        the first step) and kept: small ones first, then the loss's constant-folded
        prediction-sized tensors, then the zeros of a rewritten AddN. The small ones fill
        the small free chunks left by the build, so the zeros land in the big free region
        and take it whole (traced: bae k=6 nt=2 B=2048)."""
        t, p = self.t, self.p
        for _ in range(GRAPH_SMALL_CONSTANTS):
            t.alloc(BFC_ALIGNMENT, 0, "ephemeral")
        for size in p.loss_constants():
            t.alloc(size, len(p.layers), "ephemeral", True)
        if p.rewritten is not None:  # the folded zeros constant of the rewritten AddN
            width_bytes = p.model.batch * p.layers[p.rewritten].out_features * FLOAT32
            t.alloc(width_bytes, p.rewritten + 1, "ephemeral", True)

    # -- one step --------------------------------------------------------------------

    def step(self) -> None:
        """One training step, in the order of TF's executor.

        Tensors that need no activation come first (momentum's m * momentum, the float16
        casts of the kernels); then every layer's forward; the loss; every layer's
        backward, last first, each variable updated as soon as its gradient exists (Keras
        applies each update at once); what the step kept is freed at its end.
        """
        t, p = self.t, self.p
        self._reset_step()
        self.start_momentum()
        if p.mixed:  # the kernels' float16 casts need no activation: made first
            for i, layer in enumerate(p.layers):
                if layer.type in MATMULS:
                    size = self.weights[i][0][0] // FLOAT32 * FLOAT16
                    self.kernels16[i] = t.alloc(size, i + 1, "activations")
        for i in range(len(p.layers)):
            self.forward(i)
        gradient = self.loss_gradient()
        last = len(p.layers) - 1
        for i in range(last, -1, -1):
            if self.read_by_deferred(i + 1):
                pass  # a deferred kernel gradient reads it: its gradient gets a new buffer
            elif p.needs_output(i) or (i == last and not p.fused_softmax_loss):
                t.free(self.outputs[i])  # read by its own gradient (in place into it)
                self.outputs[i] = None
            rule = self._backward.get(p.layers[i].type, self.elementwise_backward)
            gradient = rule(i, gradient)
        self.release_gradient(gradient)
        self.finish_deferred()
        for tensor in reversed(self.late):
            t.free(tensor)
        t.free(self.tmp_var)
        for kept in self.outputs:
            t.free(kept)
        for tensor in self.casts.values():
            t.free(tensor)
        for tensor in self.small:
            t.free(tensor)

    def read_by_deferred(self, i: int) -> bool:
        return any(layer == i for layer, _ in self.deferred)

    def forward(self, i: int) -> None:
        """A layer's output, kept for the backward pass (a Dense needs its input for the
        kernel gradient, ReLU/sigmoid/tanh/softmax gradients read their output, batch norm
        its input). A normalisation's variance makes an input-sized squared difference,
        freed at once; with mixed precision it runs in float32 between a cast of its input
        (kept) and a float16 cast of its float32 result; a float16 MatMul runs through
        float32 temporaries (matmul16)."""
        t, p = self.t, self.p
        layer, row = p.layers[i], i + 1
        batch = p.model.batch
        width_in, width_out = batch * layer.in_features, batch * layer.out_features
        result = None
        if layer.type in NORMALISATIONS:
            if p.mixed:
                self.casts[i] = t.alloc(width_in * FLOAT32, row, "activations", True)
            t.free(t.alloc(width_in * FLOAT32, row, "ephemeral", True))  # squared difference
            self.small += self.forward_small(i)
            if self.traced_layer_norm(i):  # rsqrt(variance) * gamma, read by the backward
                self.scales[i] = t.alloc(width_in * FLOAT32, row, "activations", True)
            if p.mixed:
                result = t.alloc(width_out * FLOAT32, row, "ephemeral", True)
        else:
            self.small += self.forward_small(i)
        self.outputs.append(t.alloc(p.out_bytes(i), row, "activations", True))
        if self.traced_layer_norm(i):  # x * inv, summed into the output
            t.free(t.alloc(width_in * FLOAT32, row, "ephemeral", True))
        t.free(result)
        if layer.type == "dense" and p.mixed:
            size = self.weights[i][0][0] // FLOAT32
            self.matmul16(row, (width_in, size, width_out), (True, False, True))

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
        if layer.type == "layer_norm":  # per-sample mean, -mean and variance
            return [t.alloc(p.model.batch * FLOAT32, row, "ephemeral", True) for _ in range(3)]
        if layer.type == "complex_channel":
            spec = layer.spec
            uses = getattr(spec, "uses", 1)
            nt = layer.in_features // (2 * uses)
            size = p.model.batch * getattr(spec, "nr", nt) * nt * p.compute
            return [t.alloc(size, row, "ephemeral", True) for _ in range(2)]
        return []

    def last_computing_layer(self) -> int:
        """The layer whose output is the prediction (estimator.conv_steps skips views)."""
        return len(self.p.layers) - 1

    def loss_gradient(self) -> int | None:
        """The turn from forward to backward: the loss's temporaries, then the gradient of
        the prediction (the backward pass's first input).

        Softmax + categorical cross-entropy: Keras hands the softmax's logits to TF's
        fused SoftmaxCrossEntropyWithLogits (grappler prunes the unused softmax), which
        makes only batch-sized tensors and writes the logits' gradient into a forwarded
        buffer: no prediction-sized allocation, and the logits stay to the end of the
        step (traced: ae k=2 B=2048, ae k=6 B=256). Sparse categorical cross-entropy on a
        softmax runs the same way, as SparseSoftmaxCrossEntropyWithLogits (Keras hands it
        the logits too): an embedding, tanh 256, softmax 1000 classes SGD model at B=4000
        measured 28.3M, 38.3M modelled with the unfused loss, 28.5M fused."""
        t, p = self.t, self.p
        row = len(p.layers)  # the loss row, after the last layer
        if p.fused_softmax_loss:
            loss = t.alloc(p.model.batch * FLOAT32, row, "ephemeral", True)
            t.free(t.alloc(p.model.batch * FLOAT32, row, "ephemeral", True))
            t.free(loss)
            return None
        prediction = p.model.batch * p.layers[-1].out_features * FLOAT32
        if p.model.loss == "mse":
            # `sub` is written into the prediction's buffer unless the last layer's own
            # gradient still reads its output (a sigmoid's: CsiNet's traces), then Square;
            # the gradient, (prediction - y) times the folded 2 / N, takes the prediction's
            # buffer, which stays to the last layer's kernel gradient (trace: generic
            # real29 [d110sigm,layer_norm,d29line] B=333 sgd, `dense_2_1/BiasAdd` freed
            # after MatMul_1)
            sub = None
            if p.needs_output(self.last_computing_layer()):
                sub = t.alloc(prediction, row, "ephemeral", True)
            t.free(t.alloc(prediction, row, "ephemeral", True))
            t.free(sub)
            gradient, self.outputs[-1] = self.outputs[-1], None
            return gradient
        for _ in range(LOSS_TEMPORARIES):
            t.free(t.alloc(prediction, row, "ephemeral", True))
        return t.alloc(prediction, row, "ephemeral", True)

    # -- backward rules: (layer, incoming gradient) -> the gradient of its input ---------

    def release_gradient(self, gradient: int | None, keep_late: bool = True) -> None:
        """Free an incoming gradient, unless it is grappler's temporary variable (freed at
        the end of the step) or, with `keep_late`, a buffer a normalisation's input
        gradient was summed into in place (see norm_backward)."""
        if gradient != self.tmp_var and not (keep_late and gradient in self.late):
            self.t.free(gradient)

    def release_input(self, i: int, pending: bool = False) -> None:
        """The layer below's output, once the last reader of it has run (`pending`: a
        deferred kernel gradient, which kept it whatever its own gradient needs)."""
        below = i - 1
        if below >= 0 and (pending or not self.p.needs_output(below)):
            self.t.free(self.outputs[below])
            self.outputs[below] = None

    def input_gradient(self, i: int) -> int | None:
        """dx = dy @ kernel^T (a float16 MatMul through float32 temporaries when mixed);
        the kernel's float16 cast is read for the last time."""
        t, p = self.t, self.p
        layer, row = p.layers[i], i + 1
        dx = None
        if i > 0:
            width_in = p.model.batch * layer.in_features
            dx = t.alloc(width_in * p.compute, row, "gradients", True)
            if p.mixed:
                size = self.weights[i][0][0] // FLOAT32
                width_out = p.model.batch * layer.out_features
                self.matmul16(row, (width_out, size, width_in), (True, False, True))
        t.free(self.kernels16.pop(i, None))
        return dx

    def matmul_backward(self, i: int, gradient: int | None) -> int | None:
        """A Dense (or Embedding): input gradient, kernel gradient, its update, the bias.

        Both gradients read only the incoming gradient (and the layer's input or kernel),
        so the executor may run either first. The single-threaded executor's order (the
        one most processes measured) is the input gradient first, then the first tensors
        of a normalisation's backward below, then the kernel gradient, freeing the layer's
        input and the incoming gradient and updating the kernel at once. The default
        executor (grappler's rewrite) runs the kernel gradient and its update first: the
        input gradient still reads the kernel, so the update copies it (in float32; a
        mixed step reads the kernel's float16 cast instead), and the incoming gradient is
        freed after the input gradient.
        """
        t, p = self.t, self.p
        kernel_first = p.kernel_first(i)
        dx = None
        if not kernel_first:
            dx = self.input_gradient(i)
            below = i - 1
            if below >= 0 and p.layers[below].type in NORMALISATIONS:
                if self.traced_layer_norm(below) and self.defers_kernel_gradients:
                    pass  # no kernel gradient to run between: layer_norm_backward does all
                elif self.traced_layer_norm(below):
                    self.early[below] = self.layer_norm_head(below)
                else:
                    self.early[below] = self.norm_backward_head(below)
            if self.defers_kernel_gradients:
                self.deferred.append((i, gradient))
                return dx
        old = self.matmul_kernel_gradient(i, None if kernel_first else gradient)
        if kernel_first:
            dx = self.input_gradient(i)
        t.free(old)
        if kernel_first:
            self.release_gradient(gradient)
        return dx

    @property
    def defers_kernel_gradients(self) -> bool:
        """Without an optimizer nothing in the step reads a kernel gradient, and the
        single-threaded executor's order (a reverse post-order of the step graph) puts
        every Dense's kernel gradient after the whole backward pass below it: the layer's
        input and incoming gradient live until then (trace: generic real29 [d110sigm,
        layer_norm,d29line] mse B=333 none, dense_2's MatMul_1 after dense_0's MatMul)."""
        p = self.p
        return p.model.optimizer == "none" and p.model.loss == "mse" and not p.default_executor

    def matmul_kernel_gradient(self, i: int, gradient: int | None) -> int | None:
        """dy^T @ x and its update, then the bias's; the layer's input is released, and
        `gradient` (the incoming one, when the input gradient has run) once read. Returns
        the variable's old buffer when the update copied it (see update)."""
        t, p = self.t, self.p
        layer, row = p.layers[i], i + 1
        size = self.weights[i][0][0] // FLOAT32
        product = t.alloc(size * p.compute, row, "gradients")  # dy^T @ x
        if p.mixed:
            batch = p.model.batch
            width_in, width_out = batch * layer.in_features, batch * layer.out_features
            self.matmul16(row, (width_in, width_out, size), (True, True, False))
        self.release_input(i, pending=(i, gradient) in self.finishing)
        t.free(gradient)
        kernel_gradient = product
        if p.mixed:  # the float16 kernel gradient is cast to float32 for the update
            kernel_gradient = t.alloc(size * FLOAT32, row, "gradients")
            t.free(product)
        copy = p.kernel_first(i) and i > 0 and not p.mixed
        old = self.update(i, 0, kernel_gradient, copy_variable=copy)
        for n in range(1, len(self.weights[i])):
            self.update(i, n, t.alloc(self.weights[i][n][0], row, "gradients"))
        return old

    def finish_deferred(self) -> None:
        """The deferred kernel gradients (defers_kernel_gradients), lowest layer first."""
        self.finishing = sorted(self.deferred)
        for n, (i, gradient) in enumerate(self.finishing):
            self.t.free(self.matmul_kernel_gradient(i, gradient))
            if n == 0:  # the layer norms' parameter gradients read them: run by now
                for late in self.late_gradients:
                    self.t.free(late)
        self.deferred, self.finishing, self.late_gradients = [], [], []

    def norm_backward_head(self, i: int) -> list[int | None]:
        """A normalisation's first backward tensors: (mixed: the incoming gradient cast to
        float32), the gradient through the normalisation, and Tile."""
        t, p = self.t, self.p
        width = p.model.batch * p.layers[i].in_features * FLOAT32
        cast = t.alloc(width, i + 1, "ephemeral", True) if p.mixed else None
        through = t.alloc(width, i + 1, "gradients", True)
        tile = t.alloc(width, i + 1, "ephemeral", True)
        return [cast, through, tile]

    def any_layer_norm_backward(self, i: int, gradient: int | None) -> int | None:
        if self.traced_layer_norm(i):
            return self.layer_norm_backward(i, gradient)
        return self.norm_backward(i, gradient)

    def traced_layer_norm(self, i: int) -> bool:
        """Whether layer i is a layer norm whose backward runs as traced in float32 on the
        single-threaded executor (layer_norm_backward); other cases take norm_backward."""
        p = self.p
        return p.layers[i].type == "layer_norm" and not p.mixed and not p.default_executor

    def layer_norm_head(self, i: int) -> list[int | None]:
        """A layer norm's first backward tensors, run before the kernel gradient of the
        Dense above: the gradient through -mean * inv (kept), then those through x * inv
        and through inv, each reduced at once (trace: generic real29 [d110sigm,layer_norm,
        d29line] mse B=333 sgd: mul_1/Mul_1, mul_2/Mul_1, mul/Mul_1)."""
        t = self.t
        width = self.p.model.batch * self.p.layers[i].in_features * FLOAT32
        through = t.alloc(width, i + 1, "gradients", True)
        for _ in range(2):
            t.free(t.alloc(width, i + 1, "ephemeral", True))
        return [None, through, None]

    def layer_norm_backward(self, i: int, gradient: int | None) -> int | None:
        """A layer norm after its head (layer_norm_head): the per-sample scale is released,
        the moments' gradients Tile, Tile_1 and sub run, and Tile_1's buffer becomes the
        input gradient (the three input gradients summed into it); then gamma's and beta's
        gradients (same trace)."""
        t, p = self.t, self.p
        row = i + 1
        width = p.model.batch * p.layers[i].in_features * FLOAT32
        if self.defers_kernel_gradients:
            return self.layer_norm_backward_alone(i, gradient)
        through = (self.early.pop(i) if i in self.early else self.layer_norm_head(i))[1]
        t.free(self.scales.pop(i, None))
        tile = t.alloc(width, row, "ephemeral", True)
        t.free(through)
        summed = t.alloc(width, row, "gradients", True)  # Tile_1, then the input gradient
        t.free(t.alloc(width, row, "ephemeral", True))  # sub
        t.free(tile)
        self.release_gradient(gradient, keep_late=False)
        return self.norm_parameters_and_input_gradient(i, summed)

    def layer_norm_backward_alone(self, i: int, gradient: int | None) -> int | None:
        """A layer norm's backward when no kernel gradient runs amid it (the executor's
        order without an optimizer): Tile, then the gradient through -mean * inv (which
        becomes the input gradient), those through x * inv and inv, Tile_1 and sub, all
        alive at once (trace: generic real29 [d110sigm,layer_norm,d29line] mse B=333
        none, its peak at sub)."""
        t, p = self.t, self.p
        row = i + 1
        width = p.model.batch * p.layers[i].in_features * FLOAT32
        tile = t.alloc(width, row, "ephemeral", True)
        through = self.layer_norm_head(i)[1]
        tile_1 = t.alloc(width, row, "ephemeral", True)
        t.free(t.alloc(width, row, "ephemeral", True))  # sub
        t.free(tile)
        t.free(self.scales.pop(i, None))
        t.free(tile_1)
        self.late_gradients.append(gradient)  # read by the deferred kernel gradient
        return self.norm_parameters_and_input_gradient(i, through)

    def norm_backward(self, i: int, gradient: int | None) -> int | None:
        """Batch/layer norm: the gradient through the normalisation and the moments'
        gradients (Tile, Tile_1, sub), then its parameters' gradients and updates.

        The default executor computes the scale's gradient first (dy * x, reduced at
        once); the gradient through the normalisation and the sum of the three input
        gradients then reuse dy's buffer in place, which lives to the end of the step;
        with grappler's rewrite the sum goes to its temporary variable instead, alive to
        the end of the step. Mixed precision runs it in float32: the incoming gradient is
        cast to float32 and the input gradient back to float16.
        """
        t, p = self.t, self.p
        row = i + 1
        width = p.model.batch * p.layers[i].in_features * FLOAT32
        default = p.default_executor
        rewritten = i == p.rewritten
        if i in self.early:
            cast, through, tile = self.early.pop(i)
            if rewritten:
                t.free(through)
        else:
            cast = None
            if p.mixed:  # the incoming float16 gradient, now cast
                cast = t.alloc(width, row, "ephemeral", True)
                self.release_gradient(gradient, keep_late=False)
                gradient = None
            through = t.alloc(width, row, "gradients", True)
            in_place = default and not rewritten and gradient is not None
            if rewritten or in_place:
                t.free(through)
            tile = t.alloc(width, row, "ephemeral", True)
        in_place = default and not rewritten and gradient is not None
        if not default:
            t.free(gradient)
            t.free(cast)
        tile_1 = t.alloc(width, row, "ephemeral", True)
        if p.mixed:
            t.free(self.casts.pop(i))
        else:
            t.free(t.alloc(width, row, "ephemeral", True))  # sub
        if rewritten and not p.mixed:
            self.tmp_var = through = t.alloc(width, row, "gradients", True)
        t.free(tile)
        t.free(tile_1)
        t.free(cast)
        if rewritten and p.mixed:
            self.tmp_var = through = t.alloc(width, row, "gradients", True)
        if in_place and gradient is not None and gradient != self.tmp_var:
            through = gradient
            self.late.append(gradient)
        elif default:
            self.release_gradient(gradient, keep_late=False)
        return self.norm_parameters_and_input_gradient(i, through)

    def norm_parameters_and_input_gradient(self, i: int, through: int | None) -> int | None:
        """The end of norm_backward: gamma's and beta's gradients and updates, then the
        input gradient (`through`, cast to float16 when mixed) handed to the layer below."""
        t, p = self.t, self.p
        row = i + 1
        for n, (size, _) in enumerate(self.weights[i]):
            self.update(i, n, t.alloc(size, row, "gradients"))
        if p.mixed:  # the float16 input gradient; the float32 one is read by it only
            width = p.model.batch * p.layers[i].in_features * FLOAT16
            dx16 = t.alloc(width, row, "gradients", True) if i else None
            t.free(through)
            through = dx16
        self.release_input(i)
        if i > 0:
            return through
        if through != self.tmp_var and through not in self.late:
            t.free(through)
        return None

    def elementwise_backward(self, i: int, gradient: int | None) -> int | None:
        """Activations, noise, power norm, the channel: one input-sized gradient."""
        t, p = self.t, self.p
        width_in = p.model.batch * p.layers[i].in_features
        dx = t.alloc(width_in * p.compute, i + 1, "gradients", True) if i > 0 else None
        self.release_gradient(gradient, keep_late=False)
        self.release_input(i)
        return dx

    # -- kernels and updates ---------------------------------------------------------

    def matmul16(self, row: int, sizes: tuple[int, int, int], per_sample: tuple[bool, ...]) -> None:
        """A float16 MatMul on TF's Eigen CPU kernel runs in float32: both operands and the
        result are converted (three float32 temporaries, freed once the float16 result
        exists; traced on the benchmark grid's CPU). Where oneDNN takes float16 itself it
        allocates none of them (trace: bae k=2 nt=2 H_T=32 H_R=64 B=4999 sgd mixed on a CPU
        with AVX512-FP16: no float32 tensor between a Dense's float16 output and the next
        layer's, the MatMuls' outputs float16)."""
        if not self.p.float16_via_float32:
            return
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

    def update(self, i: int, n: int, gradient: int, copy_variable: bool = False) -> int | None:
        """Gradient (already allocated, float32) -> optimizer update.

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
            # lr * g is computed in the gradient's buffer (as SGD's; trace: bae k=2 nt=2
            # B=1 momentum, no 16 MiB sgd/Mul between a kernel gradient and its free) and
            # subtracted in place: the result becomes the slot's buffer
            t.free(self.slots[(i, n, 0)])
            self.slots[(i, n, 0)] = self.velocities.pop((i, n))
            if copy_variable:
                old, self.weights[i][n] = variable, (size, t.alloc(size, row, "weights"))
            t.free(gradient)
            return old
        if UPDATE_TEMPORARIES[p.model.optimizer] == 0:  # SGD: lr * g in the gradient's buffer
            if copy_variable:
                old, self.weights[i][n] = variable, (size, t.alloc(size, row, "weights"))
            t.free(gradient)
            return old
        first = t.alloc(size, row, "ephemeral")  # Adam: g - m (g^2)
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
