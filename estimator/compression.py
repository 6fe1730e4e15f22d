"""Stored model size under compression: formats, magnitude pruning, weight clustering.

The model is the list of its weight tensors (`weight_tensors`), whose sizes sum to the
Keras parameter counts of `estimator.layers`. Sizes are the bytes of the tensors' data
and the metadata each encoding needs, without any container (a TFLite flatbuffer adds
its graph, names and alignment; docs/compression.md compares the two). What is modelled:

- fp32, fp16: 4 and 2 bytes per value.
- int8 (TFLite dynamic range): the kernels of at least `QUANTIZE_MIN_ELEMENTS` values (the
  converter's default) are int8, with one float32 scale and one int64 zero point per
  tensor ('tensor') or per output channel ('channel'); everything else stays float32.
- pruning to sparsity s: in every kernel the floor(s * size) smallest weights are zero
  (TFMOT's magnitude pruning prunes kernels only). 'dense' storage keeps the zeros;
  'sparse' stores each kernel as TFLite's sparsity metadata does for CSR: the kernel as a
  2-D matrix (rows = output channels, columns = the rest), a dense row dimension with
  rows+1 segment offsets and a sparse column dimension with one column index per nonzero,
  each index vector in the narrowest of uint8/uint16/int32 that holds its values;
  'bitmap' stores the nonzeros and one bit per weight saying which are nonzero (about
  what gzip reaches on the zeros of a dense file, which is how the TFMOT guide and the
  CsiNet paper report pruned sizes).
- clustering to C clusters: each kernel stores one index of ceil(log2 C) bits per value
  (packed) and C centroids (float32, or int8 with the quantized formats plus its scale).
  TFLite itself stores clustered kernels densely; this is the indices-plus-centroids
  encoding, which a compressor approaches. Pruned and clustered: zero is one of the C.
- group pruning (structured, a sparse group LASSO's outcome): the fraction g of each
  kernel's input groups removed whole, the smaller kernel kept with a bitmap of the groups
  that survive; then the recipe above on the smaller kernel (element pruning to sparsity
  s inside the surviving groups, quantization, clustering).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import ceil, floor, log2
from typing import TYPE_CHECKING, Literal

from estimator.layers import leaves

if TYPE_CHECKING:
    from estimator.layers import ResolvedLayer

Format = Literal["fp32", "fp16", "int8"]
Scales = Literal["tensor", "channel"]
Storage = Literal["dense", "sparse", "bitmap"]
FORMATS: tuple[Format, ...] = ("fp32", "fp16", "int8")
QUANTIZE_MIN_ELEMENTS = 1024  # TFLite's weights_min_num_elements for dynamic range
SCALE_BYTES = 4 + 8  # float32 scale + int64 zero point (TFLite QuantizationParameters)


@dataclass(frozen=True)
class Tensor:
    """One weight tensor: `rows` output channels by `size // rows` columns."""

    layer: str
    name: str
    size: int
    rows: int
    kernel: bool  # a kernel (prunable, clusterable, quantizable); else a bias or a statistic
    groups: int = 0  # input groups (features, or a conv's input channels); 0: size // rows

    @property
    def input_groups(self) -> int:
        return self.groups or self.size // self.rows


def _layer_tensors(layer: ResolvedLayer) -> list[Tensor]:
    spec, name = layer.spec, layer.name
    if spec.type == "dense":
        found = [Tensor(name, "kernel", layer.in_features * spec.units, spec.units, True)]
        return found + ([Tensor(name, "bias", spec.units, 1, False)] if spec.use_bias else [])
    if spec.type == "conv2d":
        size = spec.kernel * spec.kernel * layer.in_shape[-1] * spec.filters
        found = [Tensor(name, "kernel", size, spec.filters, True, layer.in_shape[-1])]
        return found + ([Tensor(name, "bias", spec.filters, 1, False)] if spec.use_bias else [])
    if spec.type == "embedding":
        return [Tensor(name, "embeddings", layer.params, spec.input_dim, True)]
    if spec.type == "detnet_layer":
        k, z, v = spec.transmitters, spec.hidden, spec.v
        return [
            Tensor(name, "w1", (3 * k + v) * z, z, True),
            Tensor(name, "b1", z, 1, False),
            Tensor(name, "w2", z * k, k, True),
            Tensor(name, "b2", k, 1, False),
            Tensor(name, "w3", z * v, v, True),
            Tensor(name, "b3", v, 1, False),
            Tensor(name, "t", 1, 1, False),
        ]
    if layer.params:  # normalisation: per-feature vectors
        return [Tensor(name, spec.type, layer.params, 1, False)]
    return []


def weight_tensors(layers: list[ResolvedLayer]) -> list[Tensor]:
    return [tensor for layer in leaves(layers) for tensor in _layer_tensors(layer)]


def _ceil_div(numerator: int, denominator: int) -> int:
    """Exact ceil(numerator / denominator) for integers of any size (no float)."""
    return -(-numerator // denominator)


def index_bytes(largest: int) -> int:
    """The narrowest TFLite index vector (uint8, uint16, int32) holding 0..largest."""
    if largest < 2**8:
        return 1
    if largest < 2**16:
        return 2
    return 4


def csr_bytes(size: int, rows: int, nonzero: int, value_bytes: int) -> int:
    """A rows x (size/rows) matrix with `nonzero` values in TFLite's CSR-like encoding."""
    columns = size // rows
    segments = (rows + 1) * index_bytes(nonzero)
    indices = nonzero * index_bytes(columns - 1)
    return nonzero * value_bytes + segments + indices


def tensor_bytes(
    tensor: Tensor,
    fmt: Format = "fp32",
    *,
    scales: Scales = "tensor",
    sparsity: float = 0.0,
    storage: Storage = "dense",
    clusters: int | None = None,
) -> int:
    """Stored bytes of one tensor under one recipe (see the module docstring)."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity: must be in [0, 1), got {sparsity}")
    if clusters is not None and clusters < 2:
        raise ValueError(f"clusters: must be at least 2, got {clusters}")
    float_bytes = 2 if fmt == "fp16" else 4
    if not tensor.kernel:
        return tensor.size * float_bytes
    quantized = fmt == "int8" and tensor.size >= QUANTIZE_MIN_ELEMENTS
    value_bytes = 1 if quantized else float_bytes
    metadata = 0
    if quantized:
        metadata = SCALE_BYTES * (tensor.rows if scales == "channel" else 1)
    if clusters is not None:
        bits = ceil(log2(clusters))
        centroids = clusters * value_bytes
        return _ceil_div(tensor.size * bits, 8) + centroids + metadata
    nonzero = nonzero_weights(tensor.size, sparsity)
    if storage == "bitmap":
        return nonzero * value_bytes + _ceil_div(tensor.size, 8) + metadata
    if storage == "sparse":
        return csr_bytes(tensor.size, tensor.rows, nonzero, value_bytes) + metadata
    return tensor.size * value_bytes + metadata


def model_bytes(
    layers: list[ResolvedLayer],
    fmt: Format = "fp32",
    *,
    scales: Scales = "tensor",
    sparsity: float = 0.0,
    storage: Storage = "dense",
    clusters: int | None = None,
) -> int:
    """Stored bytes of every weight tensor of the model under one recipe."""
    return sum(
        tensor_bytes(t, fmt, scales=scales, sparsity=sparsity, storage=storage, clusters=clusters)
        for t in weight_tensors(layers)
    )


def size_table(layers: list[ResolvedLayer]) -> dict[str, int]:
    """The sizes `phymem estimate` reports: each format, int8 with both scale choices."""
    return {
        "fp32": model_bytes(layers, "fp32"),
        "fp16": model_bytes(layers, "fp16"),
        "int8_per_tensor": model_bytes(layers, "int8", scales="tensor"),
        "int8_per_channel": model_bytes(layers, "int8", scales="channel"),
    }


def kept_groups(groups: int, removed: float) -> int:
    """Input groups left when the fraction `removed` of them is cut (whole rows/columns)."""
    if not 0 <= removed < 1:
        raise ValueError(f"group sparsity: must be in [0, 1), got {removed}")
    return groups - floor(Fraction(removed) * groups)


def surviving_kernel(tensor: Tensor, removed: float) -> Tensor:
    """The kernel left when the fraction `removed` of its input groups is cut: the same
    output channels, each with the surviving groups' weights."""
    groups = tensor.input_groups
    size = tensor.size // groups * kept_groups(groups, removed)
    return Tensor(tensor.layer, tensor.name, size, tensor.rows, True)


def nonzero_weights(size: int, sparsity: float) -> int:
    """Weights left of `size` after magnitude pruning to `sparsity` (floor(s * size) zeroed)."""
    return size - floor(Fraction(sparsity) * size)  # exact for huge sizes


def group_pruned_bytes(
    layers: list[ResolvedLayer],
    removed: float,
    fmt: Format = "fp32",
    *,
    scales: Scales = "tensor",
    sparsity: float = 0.0,
    storage: Storage = "dense",
    clusters: int | None = None,
) -> int:
    """Stored bytes when every kernel loses the fraction `removed` of its input groups (the
    structured sparsity of a group LASSO), then the recipe (`sparsity`, `storage`, `fmt`,
    `clusters`) applies to the surviving kernel, plus a bitmap of the groups kept; biases
    and statistics stay."""
    total = 0
    for tensor in weight_tensors(layers):
        kept, mask = tensor, 0  # biases and statistics stay whole
        if tensor.kernel:
            kept, mask = surviving_kernel(tensor, removed), _ceil_div(tensor.input_groups, 8)
        total += mask + tensor_bytes(
            kept, fmt, scales=scales, sparsity=sparsity, storage=storage, clusters=clusters
        )
    return total


def peak_activation_values(layers: list[ResolvedLayer]) -> int:
    """Values alive at once in a forward pass of one sample: a layer's input and output
    (a residual block also keeps its input until the addition)."""
    peak = 0
    for layer in layers:
        if layer.inner:
            peak = max(peak, layer.in_features + peak_activation_values(list(layer.inner)))
        else:
            peak = max(peak, layer.in_features + layer.out_features)
    return peak


def inference_bytes(layers: list[ResolvedLayer], fmt: Format = "fp32") -> int:
    """Memory of inference at batch 1: the stored weights in `fmt` and the largest set of
    float32 activations alive at once (dynamic-range models compute in float32)."""
    return model_bytes(layers, fmt) + 4 * peak_activation_values(layers)


def compression_summary(layers: list[ResolvedLayer]) -> dict[str, object]:
    """What `phymem estimate` adds: parameters, stored bytes by format, MACs and FLOPs."""
    from estimator.flops import flops_summary

    flops = flops_summary(layers)
    return {
        "params": sum(layer.params for layer in layers),
        "size_bytes": size_table(layers),
        "flops": flops["flops"],
        "macs": flops["macs"],
        "macs_per_layer": flops["per_layer"],
        "inference_bytes_batch1": {fmt: inference_bytes(layers, fmt) for fmt in FORMATS},
    }


@dataclass(frozen=True)
class Recipe:
    """One pruning / quantization / clustering recipe, as `phymem compress` takes it."""

    fmt: Format = "fp32"
    scales: Scales = "tensor"
    sparsity: float = 0.0
    clusters: int | None = None

    def storages(self) -> tuple[Storage, ...]:
        # clustered kernels have one (indices-plus-centroids) encoding
        return ("dense",) if self.clusters else ("dense", "sparse", "bitmap")

    def sizes(self, layers: list[ResolvedLayer], removed: float | None = None) -> dict[str, int]:
        """Stored bytes by storage; with `removed`, after that group removal."""

        def size(storage: Storage) -> int:
            if removed is None:
                return model_bytes(
                    layers, self.fmt, scales=self.scales, sparsity=self.sparsity,
                    storage=storage, clusters=self.clusters,
                )  # fmt: skip
            return group_pruned_bytes(
                layers, removed, self.fmt, scales=self.scales, sparsity=self.sparsity,
                storage=storage, clusters=self.clusters,
            )  # fmt: skip

        return {storage: size(storage) for storage in self.storages()}


def recipe_report(
    layers: list[ResolvedLayer],
    *,
    prune: float = 0.0,
    quantize: Literal["none", "float16", "dynamic"] = "none",
    scales: Scales = "tensor",
    cluster: int | None = None,
    group_prune: float = 0.0,
) -> dict[str, object]:
    """One compression recipe: stored bytes under each storage, against float32; with
    `group_prune`, also the combined recipe: whole input groups removed first, then the
    same pruning, quantization and clustering on the surviving kernels."""
    formats: dict[str, Format] = {"none": "fp32", "float16": "fp16", "dynamic": "int8"}
    recipe = Recipe(formats[quantize], scales, prune, cluster)
    baseline = model_bytes(layers, "fp32")
    sizes = recipe.sizes(layers)
    from estimator.flops import flops_summary, structured_macs

    report: dict[str, object] = {
        "recipe": {"prune": prune, "quantize": quantize, "scales": scales, "cluster": cluster},
        "params": sum(layer.params for layer in layers),
        "fp32_bytes": baseline,
        "size_bytes": sizes,
        "reduction": _reductions(sizes, baseline),
        # unstructured pruning leaves the dense kernels' MACs (a sparse kernel skips zeros)
        "macs_dense": flops_summary(layers)["macs"],
    }
    if group_prune:
        grouped = recipe.sizes(layers, group_prune)
        report["group_pruned"] = {
            "removed": group_prune,
            "prune": prune,
            "size_bytes": grouped,
            "reduction": _reductions(grouped, baseline),
            # the surviving groups' dense kernels, element zeros included (as group FLOPs
            # are counted), and only their nonzero weights (a kernel that skips zeros)
            "macs": structured_macs(layers, group_prune),
            "macs_nonzero": structured_macs(layers, group_prune, prune),
        }
    return report


def _reductions(sizes: dict[str, int], baseline: int) -> dict[str, float]:
    # a model without weights (only reshapes, activations) reduces nothing
    return {k: round(1 - v / baseline, 4) if baseline else 0.0 for k, v in sizes.items()}
