"""Shape inference and parameter counts per layer, the way Keras builds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from estimator.spec import LayerSpec, ModelSpec


@dataclass(frozen=True)
class ResolvedLayer:
    """A layer with its input and output widths (features per sample) known."""

    index: int
    spec: LayerSpec
    in_features: int
    out_features: int
    trainable_params: int
    non_trainable_params: int
    channel_uses: int | None  # set when the input is a complex channel's output

    @property
    def type(self) -> str:
        return self.spec.type

    @property
    def name(self) -> str:
        return self.spec.name or f"{self.spec.type}_{self.index}"

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params


def _layer_shape(layer: LayerSpec, width: int, input_kind: str, index: int) -> tuple[int, int, int]:
    """Output width, trainable and non-trainable parameter counts of one layer."""
    if layer.type == "dense":
        bias = layer.units if layer.use_bias else 0
        return layer.units, width * layer.units + bias, 0
    if layer.type == "embedding":
        if index != 0 or input_kind != "index":
            raise ValueError("an embedding must be the first layer, fed an 'index' input")
        return width * layer.output_dim, layer.input_dim * layer.output_dim, 0
    if layer.type == "batch_norm":
        return width, 2 * width, 2 * width  # gamma, beta; moving mean, moving variance
    if layer.type == "layer_norm":
        return width, 2 * width, 0
    if layer.type == "complex_channel":
        if width % (2 * layer.uses):
            raise ValueError(
                f"input width {width} is not 2*uses*N_T real values (uses = {layer.uses})"
            )
        return 2 * layer.uses * layer.nr, 0, 0
    return width, 0, 0  # power_norm, activation, gaussian_noise keep the width


def resolve(model: ModelSpec) -> list[ResolvedLayer]:
    """Walk the layers, checking that each one accepts the width it is fed."""
    if model.input_kind == "index" and model.input_size != 1:
        raise ValueError("input_size: an 'index' input is one integer per sample (size 1)")
    width = model.input_size
    channel_uses: int | None = None
    resolved: list[ResolvedLayer] = []
    for index, layer in enumerate(model.layers):
        try:
            out, trainable, frozen = _layer_shape(layer, width, model.input_kind, index)
        except ValueError as error:
            raise ValueError(f"layers[{index}] ({layer.type}): {error}") from None
        resolved.append(ResolvedLayer(index, layer, width, out, trainable, frozen, channel_uses))
        if layer.type == "complex_channel":
            channel_uses = layer.uses
        elif layer.type in ("dense", "embedding"):
            channel_uses = None
        width = out
    if model.input_kind == "index" and model.layers[0].type != "embedding":
        raise ValueError("layers[0]: an 'index' input must feed an embedding layer")
    return resolved
