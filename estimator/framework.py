"""What TensorFlow's allocator holds at the peak of one Keras training step.

The paper's method (estimator.paper) counts weights, gradients and in/out tensors; this
mode follows what TF 2.21 + Keras 3 actually allocate, as traced with
`TF_CPP_VMODULE=log_memory=2` on the BFC allocator (profilers/allocator.py measures the
same peak). The mechanisms, all per tensor and rounded up to the BFC allocator's 256 bytes:

Persistent for the whole step
  - weights: every variable in float32 (master weights even for mixed precision),
    including batch-norm moving statistics;
  - optimizer slots: Adam 2 per trainable weight (m, v), momentum 1, SGD / none 0;
  - the input batch and the labels (float32, or int32 for indices).

Forward: every layer keeps its output for the backward pass (a Dense input is needed for
its kernel gradient, ReLU/sigmoid/tanh/softmax gradients read their outputs, batch norm
reads its input, power normalisation its input). With mixed precision a Dense also keeps
the float16 cast of its kernel, and batch norm (computed in float32 by Keras) keeps a
float32 cast of its input plus a float16 cast of its output.

Backward runs from the last layer to the first; Keras' optimizer update of a variable is
scheduled as soon as its gradient exists, so gradients do not pile up: at the backward of
layer i the allocator holds the persistent tensors, the kept activations of layers 0..i,
the incoming gradient, the layer's backward temporaries (batch norm: 3 more batch x width
tensors for the moments' gradient; Dense: the input gradient), the weight gradient of the
layer and one weight-sized optimizer temporary (Adam's g^2, SGD's lr*g). The loss adds
its temporaries at the turn from forward to backward.

The peak is the largest of these moments. It depends on the batch (activations against
the largest weight gradient), so the rows describe the peak at `model.batch`: layers
after the peak layer carry no activations (freed by then), and only the peak layer
carries a gradient and ephemeral temporaries. Evaluated at another batch size the rows
extrapolate that same moment.

Not modelled yet (traced, see benchmarks/accuracy.md; the reason the mode is ~11% low at
B = 2048): grappler's memory optimizer may rewrite a batch norm's AddN of input gradients
into an accumulation into a temporary variable (one batch x width tensor at the peak) set
from a constant zeros tensor that stays resident (another one); when it does depends on
grappler's static memory estimate. BFC chunk reuse without splitting (up to 2x the
request) is not simulated either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from estimator.costs import Allocation, Category, CostRow, align_up

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

BFC_ALIGNMENT = 256
FLOAT32 = 4
FLOAT16 = 2
OPTIMIZER_SLOTS = {"adam": 2, "momentum": 1, "sgd": 0, "none": 0}
OPTIMIZER_TEMPORARIES = 1  # weight-sized temporaries of one variable's update
MIXED_OPTIMIZER_TEMPORARIES = 2  # + the loss-scale optimizer's unscaled gradient
BATCH_NORM_BACKWARD_TEMPORARIES = 3  # moments gradient: Tile, Tile_1, sub
LOSS_TEMPORARIES = 2  # prediction-sized temporaries of the loss and its gradient
RESIDENT_BYTES = 0  # nothing outside the allocator is counted by get_memory_info


OUTPUT_NEEDING = ("relu", "sigmoid", "tanh", "softmax")  # gradients that read the output


@dataclass
class _Layer:
    """Per-layer tensors: fixed sizes in bytes, per-sample sizes in bytes per sample."""

    layer: ResolvedLayer
    variables: list[int] = field(default_factory=list)  # trainable variable sizes (values)
    frozen: list[int] = field(default_factory=list)  # non-trainable variable sizes
    kept: list[tuple[int, int]] = field(default_factory=list)  # (fixed, per_sample) bytes
    needs_output: bool = False  # its own backward reads its output
    # two moments of its backward: computing gradients / updating its largest variable
    backward: list[tuple[int, int]] = field(default_factory=list)
    update: list[tuple[int, int]] = field(default_factory=list)


def _variables(layer: ResolvedLayer) -> tuple[list[int], list[int]]:
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


def _analyse(model: ModelSpec, layers: list[ResolvedLayer]) -> list[_Layer]:
    mixed = model.precision == "mixed"
    compute = FLOAT16 if mixed else FLOAT32
    # a float16 weight gradient is cast to float32 and unscaled: both alive in mixed
    gradient_bytes = FLOAT32 + FLOAT16 if mixed else FLOAT32
    temporaries = MIXED_OPTIMIZER_TEMPORARIES if mixed else OPTIMIZER_TEMPORARIES
    last = len(layers) - 1
    out: list[_Layer] = []
    for layer in layers:
        trainable, frozen = _variables(layer)
        info = _Layer(layer, trainable, frozen)
        width_in, width_out = layer.in_features, layer.out_features
        final = layer.index == last
        dtype_out = FLOAT32 if final else compute  # mixed: final activation in float32
        kind = layer.spec.type
        activation = getattr(layer.spec, "activation", "linear")
        info.needs_output = activation in OUTPUT_NEEDING
        info.kept.append((0, width_out * dtype_out))
        if mixed and kind == "dense":
            info.kept.append((trainable[0] * FLOAT16, 0))  # float16 copy of the kernel
        if mixed and kind in ("batch_norm", "layer_norm"):
            info.kept.append((0, width_in * FLOAT32))  # computed in float32
        incoming = (0, width_out * dtype_out)
        input_gradient = (0, width_in * compute)
        info.backward.append(incoming)
        if kind == "batch_norm":
            info.backward.append((0, BATCH_NORM_BACKWARD_TEMPORARIES * width_out * FLOAT32))
        for size in trainable:
            info.backward.append((size * gradient_bytes, 0))  # weight gradients
        if trainable:
            largest = max(trainable)
            if layer.index > 0:
                info.update.append(input_gradient)
            info.update.append((largest * gradient_bytes, 0))
            info.update.append((temporaries * largest * FLOAT32, 0))
        out.append(info)
    return out


def _size(parts: list[tuple[int, int]], batch: int) -> int:
    return sum(align_up(f + s * batch, BFC_ALIGNMENT) for f, s in parts if f + s * batch)


def _input_parts(model: ModelSpec, layers: list[ResolvedLayer]) -> list[tuple[int, int]]:
    x = model.input_size * FLOAT32  # int32 indices are 4 bytes too
    labels = 1 if model.loss == "sparse_categorical_crossentropy" else layers[-1].out_features
    return [(0, x), (0, labels * FLOAT32)]


@dataclass(frozen=True)
class _Moment:
    layer: int  # len(layers) for the turn from forward to backward (the loss)
    update: bool  # the optimizer update of the layer's variable, after its gradients
    kept_through: int  # activations of layers 0..kept_through - 1 are alive


def _moments(analysed: list[_Layer]) -> list[_Moment]:
    moments = [_Moment(len(analysed), False, len(analysed))]
    for i in range(len(analysed) - 1, -1, -1):
        own = i + 1 if analysed[i].needs_output else i
        moments.append(_Moment(i, False, own))
        if analysed[i].update:
            moments.append(_Moment(i, True, i))  # its input is no longer needed
    return moments


def _live(moment: _Moment, analysed: list[_Layer], batch: int) -> int:
    kept = sum(_size(info.kept, batch) for info in analysed[: moment.kept_through])
    if moment.layer == len(analysed):
        width = analysed[-1].layer.out_features
        return kept + LOSS_TEMPORARIES * align_up(width * FLOAT32 * batch, BFC_ALIGNMENT)
    info = analysed[moment.layer]
    return kept + _size(info.update if moment.update else info.backward, batch)


def _peak_moment(model: ModelSpec, analysed: list[_Layer]) -> _Moment:
    return max(_moments(analysed), key=lambda m: _live(m, analysed, model.batch))


class FrameworkCostModel:
    """Per-layer bytes alive at the allocator peak of a TF/Keras training step."""

    name = "framework"
    alignment = BFC_ALIGNMENT
    decoder_blocks: int | None = None  # families expand with Table 1's 3 blocks
    batch_invariant = False  # the peak moment moves with the batch

    def rows(self, model: ModelSpec, layers: list[ResolvedLayer]) -> list[CostRow]:
        analysed = _analyse(model, layers)
        moment = _peak_moment(model, analysed)
        slots = OPTIMIZER_SLOTS[model.optimizer]
        rows = [
            CostRow(
                name="input",
                type="input",
                part="encoder",
                output_features=model.input_size,
                params=0,
                allocations=tuple(
                    Allocation("ephemeral", fixed=f, per_sample=s)
                    for f, s in _input_parts(model, layers)
                ),
                note="input batch and labels",
            )
        ]
        for i, info in enumerate(analysed):
            layer = info.layer
            allocations: list[Allocation] = []
            for size in info.variables + info.frozen:
                allocations.append(Allocation("weights", fixed=size * FLOAT32))
            for size in info.variables:
                allocations += [Allocation("optimizer", fixed=size * FLOAT32)] * slots
            notes = []
            if i < moment.kept_through:
                allocations += [Allocation("activations", f, s) for f, s in info.kept]
            if i == moment.layer:
                for f, s in info.update if moment.update else info.backward:
                    category: Category = "gradients" if s == 0 else "ephemeral"
                    allocations.append(Allocation(category, f, s))
                what = "optimizer update" if moment.update else "backward"
                notes.append(f"peak: {what} of this layer")
            rows.append(
                CostRow(
                    name=layer.name,
                    type=layer.type,
                    part=layer.spec.part,
                    output_features=layer.out_features,
                    params=layer.params,
                    allocations=tuple(a for a in allocations if a.fixed or a.per_sample),
                    index=layer.index,
                    note="; ".join(notes),
                )
            )
        if moment.layer == len(analysed):
            width = analysed[-1].layer.out_features
            rows.append(
                CostRow(
                    name="loss",
                    type="loss",
                    part="decoder",
                    output_features=width,
                    params=0,
                    allocations=(Allocation("ephemeral", 0, width * FLOAT32),) * LOSS_TEMPORARIES,
                    note="peak: loss and its gradient",
                )
            )
        return rows

    def resident_bytes(self) -> int:
        return RESIDENT_BYTES
