"""The step rules of DetNet's training graph: `detnet_layer` layers and the `detnet` loss.

A `detnet` spec trains the graph profilers.training_builders.detnet_graph builds (and
profilers.builders.build measures): the unfolded layers on the state [H^T y | H^T H | x | v]
(width W = K + K*K + K + 2K), every layer's x_hat gathered into one (B, L*K) output, labels
[x | x_ZF] (B, 2K), Eq. (4). `DetNetStepGenerator` emits that process's allocations with
estimator.steps' build, update and replay machinery and its own step.

Read off BFC allocator traces of float32 steps on the single-threaded executor, taken with

    python -m profilers.trace record SPEC.json OUT.json

for SPEC `canonical_json(estimator.families.detnet(K, N, L, batch=B, optimizer=O))` at
(K, N, L, B) = (4, 6, 2, 64) Adam and (3, 5, 3, 100) with Adam, SGD and no optimizer, on
an AVX2 CPU where TF's default left oneDNN off (measurements now turn it on, see
profilers.allocator.CHILD_ENV; benchmarks/framework_new_layers.md gives the error both
ways).
What they show, per layer (H = 8K hidden units, all sizes per sample, float32):

- Build: the step scalar t (ones), then W1 (5K x H), its bias, W2 (H x K), its bias, W3
  (H x 2K), its bias; kernels drawn as any Dense's (three kernel-sized tensors).
- Before the forward pass (no activation needed): per layer |t| and sign(t), per Adam
  variable its step's scalars, the first layer's x and v slices of the input batch, the
  labels' x and x_ZF slices and ||x - x_ZF||^2 (B).
- Forward: the state's slices H^T y (K) and H^T H (K*K), x (K: for every layer above the
  first it is the same slice LayerEstimates takes, one buffer), v (2K); the einsum H^T H x
  (K); the concat into W1's input (5K, kept for W1's kernel gradient); the slices x, v and
  the einsum freed; ReLU(W1 .) (H, kept); W2's output (K), + t (K), the soft sign's two
  divisions' gradients' -1/t^2 factors (K each, kept), its divisions (K, the second freed
  at once); W3's output (2K); the output state (W); H^T y's slice, the first division and
  W3's output freed; H^T H's slice freed in the first layer, kept above (the einsum's
  gradient reads it); the state below freed once sliced.
- The loss: the last state's x_hat slice, the (B, L*K) concat (kept to the gradient's
  slices), the squared errors (L*K), sums (B*L, B), freed; the gradient per layer is a
  slice (K) of it padded back to the state's width (StridedSliceGrad, W).
- Backward, last layer first, with the incoming state gradient g (W): its slices
  (H^T y: K, H^T H: K*K, x: K); the soft sign's gradient (K, kept to W2's kernel
  gradient; a K-sized temporary), W2's input gradient (H), g's v slice (2K), g freed;
  W3's input gradient (H, added into W2's in place), W3's then W2's kernel gradient and
  update, the ReLU's output freed, W1's kernel gradient and update (its input freed) and
  its input gradient (5K); above the first layer the gradients of the state's four
  slices, each padded to W (StridedSliceGrad): H^T y's (its two parts summed), H^T H's
  (the einsum's gradient K*K and the slice's), x's (the einsum's gradient K) and v's;
  their sum (AddN, with the estimates' gradient of the state below) goes into the first
  one's buffer: the gradient handed down.

The executor's order of independent nodes is not the same in every process
(profilers/allocator.py), and the traces show three choices that move the peak: the
estimates' padded gradients of every layer made at the start of the backward pass (the
(3, 5, 3, 100) traces) or each just before the sum that reads it (the (4, 6, 2, 64)
trace); W1's kernel gradient run late, after the next layer's first kernel gradients
(keeping its input and its ReLU's gradient alive: the Adam traces' last layer); W1's and
W3's kernel gradients run after the state's padded gradients (keeping W3's input and g's
v slice alive too: the SGD and no-optimizer traces). `modelled_order` is the rows' order
(the traced one for Adam, and for SGD); `other_orders` gives the other seven combinations,
which estimator.framework.upper_bound also covers. Not traced: mixed precision
(refused by the engine), DetNet layers beside other layer types or with another loss
(refused), the default executor.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from estimator.bfc import BFC_ALIGNMENT
from estimator.costs import Category
from estimator.steps import (
    FLOAT32,
    MEASURED_STEPS,
    OPTIMIZER_SLOTS,
    VARIABLE_HANDLE_BYTES,
    WARM_UP_STEPS,
    StepGenerator,
    StepPlan,
    Trace,
)

# The step graph's small constants (8-byte slice bounds and strides, shapes, 4-byte
# scalars), allocated before the first step and kept: 114 at L = 2, 159 at L = 3 (traced)
GRAPH_CONSTANTS, GRAPH_CONSTANTS_PER_LAYER = 24, 45
SMALL = 4  # a scalar (t, |t|, sign(t), a loss sum): one 256-byte chunk
ADAM_STEP_SCALARS = 2  # per Adam variable and step: its Add and Pow, kept to the step's end


def handles(plan: StepPlan) -> bool:
    """Whether the model is DetNet's training graph (detnet layers, the detnet loss)."""
    return plan.model.loss == "detnet"


@dataclass(frozen=True)
class Order:
    """The executor orders the rules can take (see the module docstring)."""

    estimates_early: bool = True  # every layer's estimates gradient made at the start
    late_w1: bool = True  # W1's kernel gradient after the next layer's first ones
    late_w3: bool = False  # W1's and W3's kernel gradients after the state's gradients


class DetNetStepGenerator(StepGenerator):
    """StepGenerator with the rules of the module docstring."""

    def __init__(self, plan: StepPlan, order: Order) -> None:
        first = plan.layers[0].spec
        self.k = getattr(first, "transmitters", 1)
        self.hidden = getattr(first, "hidden", 8 * self.k)
        self.width = plan.layers[0].in_features
        self.order = order
        super().__init__(plan)

    def per(self, values: int) -> int:
        """Bytes of a batch of `values` float32 values per sample."""
        return self.p.model.batch * values * FLOAT32

    def a(self, values: int, row: int, category: Category = "ephemeral") -> int:
        """Allocate a per-sample float32 tensor of `values` values."""
        return self.t.alloc(self.per(values), row, category, True)

    def run(self) -> Trace:
        t, p = self.t, self.p
        t.alloc(BFC_ALIGNMENT, 0, "ephemeral")
        self.build()
        t.alloc(self.per(p.model.input_size), 0, "ephemeral", True)  # the states
        t.alloc(self.per(2 * self.k), 0, "ephemeral", True)  # labels [x | x_ZF]
        for _ in range(GRAPH_CONSTANTS + GRAPH_CONSTANTS_PER_LAYER * len(p.layers)):
            t.alloc(BFC_ALIGNMENT, 0, "ephemeral")
        t.steps_from = len(t.events)
        for _ in range(WARM_UP_STEPS):
            self.step()
        t.measured_from = len(t.events)
        for _ in range(MEASURED_STEPS):
            t.step_starts.append(len(t.events))
            self.step()
        return t

    def build(self) -> None:
        """t, then the three Dense maps' kernels (drawn uniform) and biases, per layer;
        then the optimizer's slots in variable order."""
        t, p = self.t, self.p
        k, h = self.k, self.hidden
        shapes = [(1, False), (5 * k * h, True), (h, False), (h * k, True), (k, False)]
        shapes += [(h * 2 * k, True), (2 * k, False)]
        for i in range(len(p.layers)):
            row = []
            for size, drawn in shapes:
                nbytes = size * FLOAT32
                if drawn:
                    sample = t.alloc(nbytes, i + 1, "ephemeral")
                    scaled = t.alloc(nbytes, i + 1, "ephemeral")
                    variable = t.alloc(nbytes, i + 1, "weights")
                    t.free(scaled)
                    t.free(sample)
                else:
                    variable = t.alloc(nbytes, i + 1, "weights")
                t.alloc(VARIABLE_HANDLE_BYTES, i + 1, "ephemeral")
                row.append((nbytes, variable))
            self.weights.append(row)
        for i, owned in enumerate(self.weights):
            for n, (size, _) in enumerate(owned):
                for s in range(OPTIMIZER_SLOTS[p.model.optimizer]):
                    self.slots[(i, n, s)] = t.alloc(size, i + 1, "optimizer")
                    t.alloc(VARIABLE_HANDLE_BYTES, i + 1, "ephemeral")

    # -- one step ------------------------------------------------------------------------

    def step(self) -> None:
        t, p = self.t, self.p
        self._reset_step()
        layers = len(p.layers)
        self.kept: list[dict[str, int]] = [{} for _ in range(layers)]
        self.estimate_grads: dict[int, int] = {}
        self.pending_w1: list[int] = []
        self.start_momentum()
        self.step_scalars()
        first_x = self.a(self.k, 1)  # the first layer's x and v slices of the input
        first_v = self.a(2 * self.k, 1)
        labels = self.loss_head()
        state: int | None = None
        for i in range(layers):
            state = self.detnet_forward(i, state, (first_x, first_v) if i == 0 else None)
        gradient = self.detnet_loss(state, labels)
        for i in range(layers - 1, -1, -1):
            gradient = self.detnet_backward(i, gradient)
        self.run_late_w1()
        for tensor in reversed(self.small):
            t.free(tensor)

    def step_scalars(self) -> None:
        """|t| and sign(t) per layer, Adam's per-variable step scalars: kept to the end."""
        t, p = self.t, self.p
        for i in range(len(p.layers)):
            self.small += [t.alloc(SMALL, i + 1, "ephemeral") for _ in range(2)]
        if p.model.optimizer == "adam":
            for i, owned in enumerate(self.weights):
                for _ in owned:
                    self.small += [t.alloc(SMALL, i + 1, "ephemeral")]
                    t.free(t.alloc(SMALL, i + 1, "ephemeral"))  # Cast
                    self.small += [t.alloc(SMALL, i + 1, "ephemeral")]

    def loss_head(self) -> int:
        """The labels' x and x_ZF slices and ||x - x_ZF||^2: they need no activation."""
        row = len(self.p.layers)
        x = self.a(self.k, row)
        zf = self.a(self.k, row)
        reference = self.a(1, row)
        self.t.free(zf)
        self.small.append(reference)
        return x

    def detnet_forward(self, i: int, state: int | None, first: tuple[int, int] | None) -> int:
        """One unfolded layer on `state` (None: the input batch); returns its output state."""
        t, k, row = self.t, self.k, i + 1
        kept = self.kept[i]
        hty = self.a(k, row)
        hth = self.a(k * k, row)
        if first is None:
            x, v = self.a(k, row, "activations"), self.a(2 * k, row)
            t.free(state)  # sliced four times (x shared with LayerEstimates)
        else:
            x, v = first
        product = self.a(k, row)  # einsum H^T H x
        kept["z"] = self.a(5 * k, row, "activations")  # W1's input
        t.free(product)
        t.free(v)
        if first is not None:
            t.free(x)
            t.free(hth)
        else:
            kept["x"], kept["hth"] = x, hth
        kept["relu"] = self.a(self.hidden, row, "activations")
        for name in ("linear", "shifted", "neg", "neg_1"):  # W2 ., + t, -1/t^2 factors
            kept[name] = self.a(k, row, "activations")
        division = self.a(k, row)
        t.free(self.a(k, row))  # the second division
        w3 = self.a(2 * k, row)
        out = self.a(self.width, row, "activations")
        for tensor in (hty, division, w3):
            t.free(tensor)
        return out

    def detnet_loss(self, state: int | None, labels: int) -> int | None:
        """LayerEstimates' concat, Eq. (4)'s temporaries, and the estimates' gradients:
        every layer's now (Order.estimates_early), else the last layer's only (the others
        are made where the sum below reads them: estimate_gradient)."""
        t, p, k = self.t, self.p, self.k
        layers, row = len(p.layers), len(p.layers)
        last_x = self.a(k, row)
        t.free(state)
        estimates = self.a(layers * k, row, "activations")
        t.free(last_x)
        t.free(labels)
        square = self.a(layers * k, row)
        sums = self.a(layers, row)
        t.free(square)
        t.free(self.a(1, row))
        t.free(sums)
        for i in range(layers - 1, -1, -1):
            if self.order.estimates_early or i == layers - 1:
                self.estimate_grads[i] = self.estimate_gradient(i)
        t.free(estimates)
        return self.estimate_grads.pop(layers - 1)

    def estimate_gradient(self, i: int) -> int:
        """The loss's gradient of layer i's x_hat (a K slice) padded to the state (W)."""
        piece = self.a(self.k, len(self.p.layers))
        padded = self.a(self.width, i + 1, "gradients")
        self.t.free(piece)
        return padded

    def dense_gradient(self, i: int, n: int) -> None:
        """Variable n's (and n + 1's, its bias) gradients and updates."""
        t = self.t
        for m in (n, n + 1):
            self.update(i, m, t.alloc(self.weights[i][m][0], i + 1, "gradients"))

    def detnet_backward(self, i: int, gradient: int | None) -> int | None:
        """Layer i's backward from its output state's gradient; returns its input's."""
        t, k, row = self.t, self.k, i + 1
        kept = self.kept[i]
        above = i > 0
        pieces = {}
        if above:
            pieces["hth"], pieces["hty"] = self.a(k * k, row), self.a(k, row)
        dx_next = self.a(k, row)
        t.free(kept.pop("neg"))
        dlinear = self.a(k, row, "gradients")  # the soft sign's gradient
        t.free(kept.pop("neg_1"))
        t.free(kept.pop("linear"))
        t.free(self.a(k, row))
        t.free(kept.pop("shifted"))
        t.free(dx_next)
        self.update(i, 0, t.alloc(SMALL, row, "gradients"))  # t
        dz = self.a(self.hidden, row, "gradients")  # W2's input gradient
        dv = self.a(2 * k, row)
        t.free(gradient)
        t.free(self.a(self.hidden, row))  # W3's, added into dz
        kept["dv"] = dv  # read by W3's kernel gradient
        if not self.order.late_w3:
            self.w3_gradient(i)
        self.dense_gradient(i, 3)
        t.free(dlinear)
        if not self.order.late_w3:
            t.free(kept.pop("relu"))  # W2's and W3's input, read by both kernel gradients
        self.run_late_w1()
        in_order = not (self.order.late_w1 or self.order.late_w3)
        if in_order:
            self.w1_gradient(i)
        dz_in = self.a(5 * k, row, "gradients")
        if in_order:
            t.free(dz)
        else:
            kept["dz"] = dz
        if not above:
            t.free(dz_in)
            self.finish_late(i)
            return None
        return self.state_gradient(i, dz_in, pieces)

    def w3_gradient(self, i: int) -> None:
        self.dense_gradient(i, 5)
        self.t.free(self.kept[i].pop("dv"))

    def w1_gradient(self, i: int) -> None:
        self.dense_gradient(i, 1)
        self.t.free(self.kept[i].pop("z"))
        self.t.free(self.kept[i].pop("dz", None))

    def finish_late(self, i: int) -> None:
        """The kernel gradients an order runs after the state's padded gradients: W1's
        then W3's (Order.late_w3, the SGD traces), or W1's in the next layer (late_w1)."""
        if self.order.late_w3 and not self.order.late_w1:
            self.w1_gradient(i)
        if self.order.late_w3:
            self.w3_gradient(i)
            self.t.free(self.kept[i].pop("relu"))
        if self.order.late_w1:
            self.pending_w1.append(i)

    def run_late_w1(self) -> None:
        for i in self.pending_w1:
            self.w1_gradient(i)
        self.pending_w1 = []

    def state_gradient(self, i: int, dz_in: int, pieces: dict[str, int]) -> int:
        """The gradients of the four slices of layer i's input state, each padded to W,
        summed (with the estimates' gradient of that state) into the first."""
        t, k, row, width = self.t, self.k, i + 1, self.width
        kept = self.kept[i]
        t.free(self.a(k, row))  # z's H^T y part, added into g's
        padded = [self.a(width, row, "gradients")]
        t.free(pieces["hty"])
        dx, dproduct = self.a(k, row), self.a(k, row)
        outer = self.a(k * k, row)  # the einsum's gradient of H^T H
        t.free(kept.pop("x"))
        t.free(pieces["hth"])
        padded.append(self.a(width, row, "gradients"))
        t.free(outer)
        through = self.a(k, row)  # the einsum's gradient of x
        t.free(dproduct)
        t.free(kept.pop("hth"))
        t.free(through)
        padded.append(self.a(width, row, "gradients"))
        t.free(dx)
        dv = self.a(2 * k, row)
        t.free(dz_in)
        padded.append(self.a(width, row, "gradients"))
        t.free(dv)
        self.finish_late(i)
        below = self.estimate_grads.pop(i - 1, None)
        if below is None:
            below = self.estimate_gradient(i - 1)
        for tensor in (*padded[1:], below):
            t.free(tensor)
        return padded[0]


def modelled_order(plan: StepPlan) -> Order:
    """The order the rows follow: as the Adam traces ran it, and with SGD (no optimizer:
    SGD at rate 0) the kernel gradients of W1 and W3 after the state's gradients, as the
    SGD and no-optimizer traces ran them."""
    if plan.model.optimizer == "adam":
        return Order(estimates_early=True, late_w1=True, late_w3=False)
    return Order(estimates_early=True, late_w1=False, late_w3=True)


def generate(plan: StepPlan, order: Order | None = None) -> Trace:
    return DetNetStepGenerator(plan, order or modelled_order(plan)).run()


def other_orders(plan: StepPlan) -> list[Trace]:
    """The orders the bound covers beside the modelled one: every combination of the
    three choices the traces show (see the module docstring)."""
    modelled = modelled_order(plan)
    orders = [Order(*flags) for flags in itertools.product((True, False), repeat=3)]
    return [generate(plan, order) for order in orders if order != modelled]
