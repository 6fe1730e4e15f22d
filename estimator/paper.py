"""The paper's Eqs. (1)-(2), per layer, as `docs/table2.md` derives them.

The method of the cited estimator counts, per layer, weights and their gradients
(2p bytes per parameter) and in/out tensors (4p bytes per output value per sample, for
dense layers only); no optimizer state, no ephemeral tensors, and a resident buffer of
0.38 GiB. Two readings of the printed equations are kept because Table 2 needs them:
the first decoder Dense counts N_R inputs (complex values counted once) and the loss
head adds 16 values per sample ('+16' in Eq. (2)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from estimator.costs import Allocation, CostRow, bytes_per_value, layer_row
from estimator.families import EQ2_DECODER_BLOCKS
from estimator.units import GIB

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer
    from estimator.spec import ModelSpec

RESIDENT_BUFFER_BYTES = round(0.38 * GIB)  # 0.38 GiB, to the nearest byte
EQ2_LOSS_VALUES = 16
BATCH_NORM_PARAMS_PER_FEATURE = 4  # "as in the TensorFlow implementation"


def paper_params(layer: ResolvedLayer) -> int:
    """Parameters as the paper's equations count them."""
    spec = layer.spec
    if spec.type == "dense":
        inputs = layer.in_features
        if layer.channel_uses is not None:  # Eq. (2): H_R(N_R + 1), one input per antenna
            inputs //= 2 * layer.channel_uses
        return inputs * spec.units + (spec.units if spec.use_bias else 0)
    if spec.type == "batch_norm":
        if len(layer.out_shape) > 1:  # per channel on a feature map, as Keras counts them
            return layer.params
        return BATCH_NORM_PARAMS_PER_FEATURE * layer.out_features
    if spec.type == "residual":
        return sum(paper_params(inner) for inner in layer.inner)
    return layer.params


def paper_activation_values(layer: ResolvedLayer) -> int:
    """Values per sample whose in/out tensors the method counts: the outputs of the layers
    that compute (dense and, generalised, conv2d, each of a DetNet layer's three dense maps,
    and those inside a residual block)."""
    spec = layer.spec
    if spec.type in ("dense", "conv2d"):
        return layer.out_features
    if spec.type == "detnet_layer":
        return spec.hidden + spec.transmitters + spec.v
    if spec.type == "residual":
        return sum(paper_activation_values(inner) for inner in layer.inner)
    return 0


class PaperCostModel:
    name = "paper"
    basis = "paper-equations"
    alignment = 1
    decoder_blocks: int | None = EQ2_DECODER_BLOCKS
    batch_invariant = True

    def rows(self, model: ModelSpec, layers: list[ResolvedLayer]) -> list[CostRow]:
        p = bytes_per_value(model)
        rows = []
        for layer in layers:
            params = paper_params(layer)
            allocations = [
                Allocation("weights", fixed=p * params),
                Allocation("gradients", fixed=p * params),
            ]
            values = paper_activation_values(layer)
            if values:
                allocations.append(Allocation("activations", per_sample=4 * p * values))
            kept = (a for a in allocations if a.fixed or a.per_sample)
            rows.append(layer_row(layer, kept, params=params))
        rows.append(
            CostRow(
                name="loss",
                type="loss",
                part="decoder",
                output_features=EQ2_LOSS_VALUES,
                params=0,
                allocations=(Allocation("activations", per_sample=4 * p * EQ2_LOSS_VALUES),),
                note="Eq. (2)'s constant 4pB*16",
            )
        )
        return rows

    def resident_bytes(self) -> int:
        return RESIDENT_BUFFER_BYTES
