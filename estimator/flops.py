"""Multiply-accumulates per layer, the compute the compression papers report.

One MAC is one multiplication and one addition; FLOPs are counted as 2 per MAC (the
DetNet paper's convention, one FLOP per addition or multiplication, with the bias add
standing in for the first addition of each dot product). Only the layers that multiply
weights count: normalisation, activations, reshapes and the residual additions are left
out (a few values per output, against hundreds of MACs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from estimator.layers import leaves

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer


@dataclass(frozen=True)
class LayerMacs:
    name: str
    type: str
    macs: int


def layer_macs(layer: ResolvedLayer) -> int:
    """MACs of one (non-residual) layer for one sample."""
    spec = layer.spec
    if spec.type == "dense":
        return layer.in_features * spec.units
    if spec.type == "conv2d":
        height, width, filters = layer.out_shape
        return height * width * filters * spec.kernel * spec.kernel * layer.in_shape[-1]
    if spec.type == "detnet_layer":
        k, z, v = spec.transmitters, spec.hidden, spec.v
        return k * k + (3 * k + v) * z + z * k + z * v  # H^T H x_k, then W1, W2, W3
    return 0


def _kernel_positions(layer: ResolvedLayer) -> int:
    """How often each kernel weight multiplies per sample: once in a dense map (and
    DetNet's W1, W2, W3), at every output position of a conv."""
    if layer.spec.type == "conv2d":
        height, width, _ = layer.out_shape
        return int(height * width)
    return 1


def structured_macs(layers: list[ResolvedLayer], removed: float, sparsity: float = 0.0) -> int:
    """MACs when every kernel loses the fraction `removed` of its input groups (input
    features of a dense map, input channels of a conv, the inputs of DetNet's W1, W2, W3):
    their multiplications go with them. With `sparsity`, only the multiplications by the
    weights left nonzero inside the surviving groups count (each kernel pruned as
    estimator.compression prunes it). DetNet's H^T H x_k product has no weights and stays."""
    from estimator.compression import _layer_tensors, nonzero_weights, surviving_kernel

    total = 0
    for layer in leaves(layers):
        if layer.spec.type not in ("dense", "conv2d", "detnet_layer"):
            continue  # an embedding is a lookup: no MACs (layer_macs)
        if layer.spec.type == "detnet_layer":
            total += layer.spec.transmitters**2
        for tensor in _layer_tensors(layer):
            if tensor.kernel:
                size = surviving_kernel(tensor, removed).size
                total += _kernel_positions(layer) * nonzero_weights(size, sparsity)
    return total


def macs_per_layer(layers: list[ResolvedLayer]) -> list[LayerMacs]:
    """One row per layer (residual blocks opened up), in order."""
    return [LayerMacs(layer.name, layer.type, layer_macs(layer)) for layer in leaves(layers)]


def flops_summary(layers: list[ResolvedLayer]) -> dict[str, object]:
    """JSON-ready MACs per layer and totals for one sample (inference)."""
    rows = macs_per_layer(layers)
    total = sum(row.macs for row in rows)
    return {
        "macs": total,
        "flops": 2 * total,
        "per_layer": [{"name": r.name, "type": r.type, "macs": r.macs} for r in rows if r.macs],
    }
