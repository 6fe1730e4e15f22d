"""Shape inference and parameter counts per layer, the way Keras builds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from estimator.spec_base import MAX_LAYERS

if TYPE_CHECKING:
    from estimator.spec import BlockLayerSpec, LayerSpec, ModelSpec


Shape = tuple[int, ...]  # per sample, channels last (Keras' layout)

# CsiNet's layer types, whose framework-mode rules live in estimator/conv_steps.py.
CONV_LAYER_TYPES = ("conv2d", "reshape", "flatten", "leaky_relu", "residual")
# Layer types that need a flat (1-D) input.
FLAT_ONLY = ("dense", "embedding", "complex_channel", "power_norm", "detnet_layer")


@dataclass(frozen=True)
class ResolvedLayer:
    """A layer with its input and output widths (features per sample) known."""

    index: int
    spec: LayerSpec | BlockLayerSpec
    in_features: int
    out_features: int
    trainable_params: int
    non_trainable_params: int
    channel_uses: int | None  # set when the input is a complex channel's output
    in_shape: Shape = ()
    out_shape: Shape = ()
    inner: tuple[ResolvedLayer, ...] = ()  # a residual block's layers

    @property
    def type(self) -> str:
        return self.spec.type

    @property
    def name(self) -> str:
        return self.spec.name or f"{self.spec.type}_{self.index}"

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params


def _product(shape: Shape) -> int:
    total = 1
    for side in shape:
        total *= side
    return total


def conv_output_side(side: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of one spatial axis, as Keras computes it."""
    if padding == "same":
        return -(-side // stride)
    if side < kernel:
        raise ValueError(f"kernel {kernel} is larger than the input side {side} ('valid')")
    return (side - kernel) // stride + 1


def detnet_width(transmitters: int, v: int) -> int:
    """Values per sample a DetNet layer carries: H^T y, H^T H, x_k, v_k."""
    return transmitters + transmitters * transmitters + transmitters + v


def detnet_params(transmitters: int, hidden: int, v: int) -> int:
    """W1, b1 (on [H^T y, x, H^T H x, v]), W2, b2, W3, b3 and the threshold t."""
    q = 3 * transmitters + v
    return q * hidden + hidden + hidden * transmitters + transmitters + hidden * v + v + 1


def _layer_shape(
    layer: LayerSpec | BlockLayerSpec, shape: Shape, input_kind: str, index: int
) -> tuple[Shape, int, int]:
    """Output shape, trainable and non-trainable parameter counts of one layer."""
    width = _product(shape)
    if layer.type in FLAT_ONLY and len(shape) != 1:
        raise ValueError(f"needs a flat input, got shape {list(shape)} (add a flatten layer)")
    if layer.type == "dense":
        bias = layer.units if layer.use_bias else 0
        return (layer.units,), width * layer.units + bias, 0
    if layer.type == "embedding":
        if index != 0 or input_kind != "index":
            raise ValueError("an embedding must be the first layer, fed an 'index' input")
        return (width * layer.output_dim,), layer.input_dim * layer.output_dim, 0
    channels = shape[-1]
    if layer.type == "batch_norm":
        return shape, 2 * channels, 2 * channels  # gamma, beta; moving mean, moving variance
    if layer.type == "layer_norm":
        return shape, 2 * channels, 0
    if layer.type == "complex_channel":
        if width % (2 * layer.uses):
            raise ValueError(
                f"input width {width} is not 2*uses*N_T real values (uses = {layer.uses})"
            )
        return (2 * layer.uses * layer.nr,), 0, 0
    if layer.type == "conv2d":
        if len(shape) != 3:
            raise ValueError(f"needs a (height, width, channels) input, got shape {list(shape)}")
        height, across = (
            conv_output_side(side, layer.kernel, layer.stride, layer.padding) for side in shape[:2]
        )
        weights = layer.kernel * layer.kernel * channels * layer.filters
        bias = layer.filters if layer.use_bias else 0
        return (height, across, layer.filters), weights + bias, 0
    if layer.type == "reshape":
        target = tuple(layer.target)
        if _product(target) != width:
            raise ValueError(
                f"target: {list(target)} holds {_product(target)} values, the input {width}"
            )
        return target, 0, 0
    if layer.type == "flatten":
        return (width,), 0, 0
    if layer.type == "detnet_layer":
        expected = detnet_width(layer.transmitters, layer.v)
        if width != expected:
            raise ValueError(
                f"input width {width} is not K + K*K + K + v = {expected} "
                f"(transmitters = {layer.transmitters}, v = {layer.v})"
            )
        return shape, detnet_params(layer.transmitters, layer.hidden, layer.v), 0
    return shape, 0, 0  # power_norm, activation, gaussian_noise, leaky_relu keep the shape


def _walk(
    layers: Sequence[LayerSpec | BlockLayerSpec],
    shape: Shape,
    input_kind: str,
    prefix: str,
    top: bool,
) -> list[ResolvedLayer]:
    channel_uses: int | None = None
    resolved: list[ResolvedLayer] = []
    for index, layer in enumerate(layers):
        where = f"{prefix}layers[{index}] ({layer.type})"
        inner: tuple[ResolvedLayer, ...] = ()
        try:
            if layer.type == "residual":
                inner = tuple(_walk(layer.layers, shape, input_kind, f"{where}: ", False))
                out = inner[-1].out_shape
                if out != shape:
                    raise ValueError(
                        f"the block's output shape {list(out)} differs from its input "
                        f"{list(shape)}, so they cannot be added"
                    )
                trainable = sum(r.trainable_params for r in inner)
                frozen = sum(r.non_trainable_params for r in inner)
            else:
                out, trainable, frozen = _layer_shape(
                    layer, shape, input_kind, index if top else -1
                )
        except ValueError as error:
            message = str(error)
            if message.startswith(f"{where}: "):
                raise
            raise ValueError(f"{where}: {message}") from None
        resolved.append(
            ResolvedLayer(
                index,
                layer,
                _product(shape),
                _product(out),
                trainable,
                frozen,
                channel_uses,
                shape,
                out,
                inner,
            )
        )
        if layer.type == "complex_channel":
            channel_uses = layer.uses
        elif layer.type in ("dense", "embedding"):
            channel_uses = None
        shape = out
    return resolved


def resolve(model: ModelSpec) -> list[ResolvedLayer]:
    """Walk the layers, checking that each one accepts the shape it is fed."""
    if model.input_kind == "index" and model.input_size != 1:
        raise ValueError("input_size: an 'index' input is one integer per sample (size 1)")
    blocks = [layer for layer in model.layers if layer.type == "residual"]
    count = len(model.layers) - len(blocks) + sum(len(block.layers) for block in blocks)
    if count > MAX_LAYERS:
        raise ValueError(
            f"layers: {count} layers in all (a residual block counts its layers); "
            f"at most {MAX_LAYERS}"
        )
    resolved = _walk(model.layers, (model.input_size,), model.input_kind, "", True)
    if model.input_kind == "index" and model.layers[0].type != "embedding":
        raise ValueError("layers[0]: an 'index' input must feed an embedding layer")
    return resolved


def leaves(layers: list[ResolvedLayer]) -> list[ResolvedLayer]:
    """The layers with residual blocks opened up (in order)."""
    found: list[ResolvedLayer] = []
    for layer in layers:
        found += leaves(list(layer.inner)) if layer.inner else [layer]
    return found
