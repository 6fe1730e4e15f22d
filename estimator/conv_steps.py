"""The step rules of CsiNet's layer types: conv2d, reshape, flatten, leaky_relu, residual.

estimator.steps generates a Dense/normalisation model's allocations; a model with any of
these layer types runs through `ConvStepGenerator`, the same skeleton (StepGenerator.step)
with forward and backward rules for them. A residual block is opened into its layers
followed by the block itself, standing for the sum with the block's input (`leaf_plan`);
every tensor is reported in the row of the top-level layer it belongs to.

Each rule was read off BFC allocator traces of float32 CsiNet training steps with Adam on
the single-threaded executor, taken with

    python -m profilers.trace record SPEC.json OUT.json

for SPEC the `csinet` family at gamma 1/16 batch 1 and 32 and gamma 1/4 batch 200
(`canonical_json(estimator.families.csinet(gamma, batch=B))`). What they show:

- reshape and flatten allocate nothing: the output is a view of the input's buffer, freed
  by whichever reader of the two is last.
- Conv2D (oneDNN on this build: Keras' conv + bias is rewritten to one fused oneDNN op,
  reported as BiasAdd) allocates its output, then an 8,216-byte scratch buffer freed at
  once (`ONEDNN_CONV_SCRATCH`: the same size at batch 1, 32 and 200 and for 2 to 16
  filters). A sigmoid on it runs in place. Backward: Conv2DBackpropInput allocates the
  input-sized gradient (none when only views of the model input lie below); the fused
  Conv2DBackpropFilter allocates the kernel's and the bias's gradients; the layer's input
  and the incoming gradient go after it; the bias is updated, then the kernel.
- Inside a residual block the executor runs the input gradients down the block first
  and every conv's kernel gradient after the block's first conv's input gradient (all
  three traces: residual_10's conv2d_3 and conv2d_6 kernel gradients follow conv2d_0's
  Conv2DBackpropInput), so each conv's input and incoming gradient live until then.
- Batch norm over a (height, width, channels) input: forward as estimator.steps'; backward
  the input gradient dy * scale (kept: the moments' gradients are summed into it in place),
  dy * x (reduced to the scale's gradient and freed), the parameters' updates, then the
  moments' Tile_1, the layer's input freed, Tile, both freed: no `sub` temporary.
- LeakyReLU keeps its output for the layer above and its input for its gradient, which is
  written into the incoming gradient's buffer (TF forwards a buffer nothing else reads; a
  buffer still read elsewhere, as the gradient at a block's end is, gets a new one).
- The block's sum with its input is written into the block's last output (AddV2 forwards
  it: nothing else reads it); backward, the incoming gradient goes both ways unchanged, and
  at the block's input the branch's gradient is added into it in place (no allocation).
- The MSE loss makes `sub` and `Square`, prediction-sized, freed at once, and writes its
  gradient into the prediction's buffer (no allocation); its Tile_1 (the mean's gradient,
  prediction-sized) needs no activation and is made and freed before the forward pass.

The execution order of independent nodes is not the same in every process (see
profilers/allocator.py): the traces also show a conv's kernel gradient before its input
gradient, and kernel gradients (conv and Dense) deferred past later blocks. `other_orders`
gives the orders the bound (estimator.framework.upper_bound) also covers: every kernel
gradient (conv and Dense) deferred to the end of the backward pass, the latest any order
can run it, so every layer's input and incoming gradient lives longest; every Dense's
kernel gradient first (as for Dense models); both. Not traced: mixed precision (refused by
the engine), grappler's AddN rewrite (estimator.rewrites) with these layers. DetNet's
layer and loss have rules of their own (estimator/detnet_steps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from estimator.layers import CONV_LAYER_TYPES
from estimator.steps import BATCH_NORM_STATISTICS, FLOAT32, MATMULS, StepGenerator, StepPlan, Trace

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer

VIEWS = ("reshape", "flatten")
ONEDNN_CONV_SCRATCH = 8216  # the fused oneDNN conv's scratch buffer (traced, see above)

Rule = Callable[[int, "int | None"], "int | None"]


def handles(layers: list[ResolvedLayer]) -> bool:
    """Whether a model needs these rules (it has one of their layer types)."""
    return any(layer.type in CONV_LAYER_TYPES for layer in layers)


@dataclass
class SharedTrace(Trace):
    """A trace whose tensors can have more than one owner: a free only counts down the
    extra owners (`share`) before the tensor is really freed."""

    holds: dict[int, int] = field(default_factory=dict)

    def share(self, tensor: int) -> int:
        self.holds[tensor] = self.holds.get(tensor, 0) + 1
        return tensor

    def free(self, tensor: int | None) -> None:
        if tensor is not None and self.holds.get(tensor, 0) > 0:
            self.holds[tensor] -= 1
            return
        super().free(tensor)


@dataclass
class Leaves:
    """A model's layers with residual blocks opened up: each block's layers, then the
    block itself (its sum with its input)."""

    layers: list[ResolvedLayer]
    rows: list[int]  # per leaf + 1 (0: the input): the row of its top-level layer
    starts: dict[int, int]  # a block's leaf -> the leaf of its first layer


def leaf_plan(layers: list[ResolvedLayer]) -> Leaves:
    leaves: list[ResolvedLayer] = []
    rows, starts = [0], {}
    for row, layer in enumerate(layers, start=1):
        first = len(leaves)
        for inner in layer.inner:
            leaves.append(inner)
            rows.append(row)
        if layer.inner:
            starts[len(leaves)] = first
        leaves.append(layer)
        rows.append(row)
    return Leaves(leaves, rows, starts)


class ConvStepGenerator(StepGenerator):
    """StepGenerator with the rules of the module docstring; `defer` names the layer types
    (conv2d, dense) whose kernel gradients run at the end of the backward pass instead (an
    order the bound covers)."""

    def __init__(self, plan: StepPlan, defer: frozenset[str] = frozenset()) -> None:
        self.leaves = leaf_plan(plan.layers)
        self.defer = defer  # layer types whose kernel gradients wait for the end
        self.block_of = {
            j: start for end, start in self.leaves.starts.items() for j in range(start, end)
        }
        super().__init__(replace(plan, layers=self.leaves.layers))
        self.shared = self.t = SharedTrace()
        rules: dict[str, Rule] = {
            "conv2d": self.conv_backward,
            "reshape": self.view_backward,
            "flatten": self.view_backward,
            "leaky_relu": self.leaky_backward,
            "residual": self.add_backward,
            "batch_norm": self.batch_norm_backward,
            "dense": self.matmul_or_deferred,
            "embedding": self.matmul_or_deferred,
        }
        self.rules = {**self._backward, **rules}
        for layer in self.p.layers:
            self._backward[layer.type] = self.dispatch

    def _reset_step(self) -> None:
        super()._reset_step()
        self.deferred: list[tuple[int, int | None]] = []  # (conv, its incoming gradient)
        self.skips: dict[int, int | None] = {}  # a block's first leaf -> gradient at its end

    def run(self) -> Trace:
        trace = super().run()
        for tensor in trace.tensors:  # leaves' rows -> their top-level layers' rows
            tensor.layer = self.leaves.rows[tensor.layer]
        return trace

    # -- forward -------------------------------------------------------------------------

    def forward(self, i: int) -> None:
        t, p = self.t, self.p
        kind = p.layers[i].type
        if kind in VIEWS or (kind == "residual" and not p.needs_output(i - 1)):
            self.outputs.append(self.view_of(i - 1))
        elif kind == "residual":  # the block's last output is read again: a new buffer
            self.outputs.append(t.alloc(p.out_bytes(i), i + 1, "activations", True))
        elif kind == "conv2d":
            self.outputs.append(t.alloc(p.out_bytes(i), i + 1, "activations", True))
            t.free(t.alloc(ONEDNN_CONV_SCRATCH, i + 1, "ephemeral"))
        else:
            super().forward(i)

    def forward_small(self, i: int) -> list[int]:
        """A spatial batch norm's statistics are per channel (traced: 8 bytes each for
        batch_norm_2's 2 channels); other layers' as estimator.steps'."""
        layer = self.p.layers[i]
        if layer.type != "batch_norm" or len(layer.in_shape) < 2:
            return super().forward_small(i)
        width = layer.in_shape[-1] * FLOAT32
        return [self.t.alloc(width, i + 1, "ephemeral") for _ in range(BATCH_NORM_STATISTICS)]

    def view_of(self, below: int) -> int | None:
        """The buffer of layer `below`'s output, now also (or only) a view's output."""
        if below < 0:
            return None  # the input batch, which the step does not own
        buffer = self.outputs[below]
        if buffer is None or self.p.needs_output(below):
            return None if buffer is None else self.shared.share(buffer)
        self.outputs[below] = None
        return buffer

    def start_momentum(self) -> None:
        """What needs no activation runs first: momentum's m * momentum (as for every
        model) and the MSE's Tile_1."""
        super().start_momentum()
        if self.p.model.loss == "mse":
            self.t.free(self.t.alloc(self.prediction_bytes, len(self.p.layers), "ephemeral", True))

    @property
    def prediction_bytes(self) -> int:
        return self.p.model.batch * self.p.layers[-1].out_features * FLOAT32

    def last_computing_layer(self) -> int:
        computing = [i for i, layer in enumerate(self.p.layers) if layer.type not in VIEWS]
        return computing[-1] if computing else len(self.p.layers) - 1

    # -- backward ------------------------------------------------------------------------

    def dispatch(self, i: int, gradient: int | None) -> int | None:
        """Layer i's rule, then, at a block's first layer, the block's closing work."""
        rule = self.rules.get(self.p.layers[i].type, self.elementwise_backward)
        gradient = rule(i, gradient)
        if i in self.skips:
            gradient = self.close_block(i, gradient)
        if i == 0:
            self.run_deferred(lambda _: True)
        return gradient

    def close_block(self, start: int, branch: int | None) -> int | None:
        """The deferred kernel gradients of the block's later convs, the branch's gradient
        added into the skip's in place, then the first conv's kernel gradient (with
        `defer` they wait for the end of the backward pass)."""
        late = "conv2d" in self.defer
        if not late:
            self.run_deferred(lambda j: self.block_of.get(j) == start and j != start)
        skip = self.skips.pop(start)
        self.t.free(branch)
        if not late:
            self.run_deferred(lambda j: j == start)
        return skip

    def run_deferred(self, chosen: Callable[[int], bool]) -> None:
        ready = sorted(entry for entry in self.deferred if chosen(entry[0]))
        self.deferred = [entry for entry in self.deferred if not chosen(entry[0])]
        for i, gradient in ready:
            self.kernel_gradient(i, gradient)

    def has_input_gradient(self, i: int) -> bool:
        """Whether the gradient reaches below layer i (a trainable layer lies below)."""
        return any(layer.trainable_params for layer in self.p.layers[:i])

    def conv_backward(self, i: int, gradient: int | None) -> int | None:
        t, p = self.t, self.p
        dx = None
        if self.has_input_gradient(i):
            width_in = p.model.batch * p.layers[i].in_features * FLOAT32
            dx = t.alloc(width_in, i + 1, "gradients", True)  # Conv2DBackpropInput
        if "conv2d" in self.defer or i in self.block_of:
            self.deferred.append((i, gradient))
        else:
            self.kernel_gradient(i, gradient)
        return dx

    def matmul_or_deferred(self, i: int, gradient: int | None) -> int | None:
        """A Dense as estimator.steps runs it; with `defer`, its input gradient now and
        its kernel gradient at the end of the backward pass (the generic dense + residual
        trace of benchmarks/framework_new_layers.py ran the last Dense's MatMul_1 last)."""
        if self.p.layers[i].type not in self.defer:
            return self.matmul_backward(i, gradient)
        dx = self.input_gradient(i)
        self.deferred.append((i, gradient))
        return dx

    def kernel_gradient(self, i: int, gradient: int | None) -> None:
        """The fused Conv2DBackpropFilter (kernel and bias gradients; a deferred Dense's
        MatMul and BiasAddGrad), the input and the incoming gradient freed, the bias then
        the kernel updated."""
        t = self.t
        owned = self.weights[i]
        grads = [t.alloc(size, i + 1, "gradients") for size, _ in owned]
        self.release_input(i)
        t.free(gradient)
        for n in reversed(range(len(owned))):
            self.update(i, n, grads[n])

    def view_backward(self, i: int, gradient: int | None) -> int | None:
        return gradient  # the gradient's reshape is a view too

    def leaky_backward(self, i: int, gradient: int | None) -> int | None:
        t, p = self.t, self.p
        if gradient is not None and self.shared.holds.get(gradient, 0) > 0:
            width = p.model.batch * p.layers[i].in_features * FLOAT32
            fresh = t.alloc(width, i + 1, "gradients", True)
            t.free(gradient)
            gradient = fresh
        if i > 0 and not p.needs_output(i - 1):  # its input, read by its gradient only
            t.free(self.outputs[i - 1])
            self.outputs[i - 1] = None
        if not self.has_input_gradient(i):
            t.free(gradient)
            return None
        return gradient

    def add_backward(self, i: int, gradient: int | None) -> int | None:
        """The block's sum: the gradient goes to the branch and, unchanged, to the skip."""
        start = self.leaves.starts[i]
        self.skips[start] = None if gradient is None else self.shared.share(gradient)
        return gradient

    def batch_norm_backward(self, i: int, gradient: int | None) -> int | None:
        """Spatial batch norm (see the module docstring); a flat one as estimator.steps."""
        t, p = self.t, self.p
        if len(p.layers[i].in_shape) < 2:
            return self.norm_backward(i, gradient)
        width = p.model.batch * p.layers[i].in_features * FLOAT32
        row = i + 1
        through = t.alloc(width, row, "gradients", True)  # dy * scale: the input gradient
        t.free(t.alloc(width, row, "ephemeral", True))  # dy * x, for the scale's gradient
        t.free(gradient)
        for n, (size, _) in enumerate(self.weights[i]):
            self.update(i, n, t.alloc(size, row, "gradients"))
        tile_1 = t.alloc(width, row, "ephemeral", True)
        self.release_input(i)
        tile = t.alloc(width, row, "ephemeral", True)
        t.free(tile_1)
        t.free(tile)
        if not self.has_input_gradient(i):
            t.free(through)
            return None
        return through


DEFERRED_ORDERS = (frozenset({"conv2d"}), frozenset({"conv2d", *MATMULS}))


def generate(plan: StepPlan, defer: frozenset[str] = frozenset()) -> Trace:
    """The process's allocations: these rules where the model needs them."""
    if handles(plan.layers):
        return ConvStepGenerator(plan, defer).run()
    return StepGenerator(plan).run()


def other_orders(plan: StepPlan) -> list[Trace]:
    """The further orders estimator.framework.upper_bound covers for such a model: every
    Dense's kernel gradient first; every conv's, or every conv's and Dense's, kernel
    gradient deferred to the end of the backward pass; each of those two with the first."""
    leaves = leaf_plan(plan.layers).layers  # the generator's layer indices
    matmuls = frozenset(i for i, layer in enumerate(leaves) if layer.type in MATMULS)
    flipped = replace(plan, flipped=matmuls)
    orders = [generate(flipped)]
    for defer in DEFERRED_ORDERS:
        orders += [generate(plan, defer), generate(flipped, defer)]
    return orders
