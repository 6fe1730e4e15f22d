"""The CsiNet and DetNet papers' printed sizes and FLOPs beside the estimator's.

`python benchmarks/compression_tables.py` prints the markdown tables of docs/compression.md.
Estimates only (no model is built); MB in the CsiNet rows is MiB (2^20 bytes), which is how
the printed originals match the parameter counts; the DetNet rows show both.
"""

from __future__ import annotations

from math import floor

from estimator.compression import group_pruned_bytes, model_bytes, tensor_bytes, weight_tensors
from estimator.families import csinet, detnet
from estimator.flops import flops_summary, structured_macs
from estimator.layers import resolve

MIB = 2**20
# (gamma): original, quantized, pruned, clustered, quantized+pruned, quantized+clustered (MB)
CSINET_PRINTED = {
    "1/4": (8.037, 2.031, 4.423, 1.519, 0.942, 1.085),
    "1/16": (2.037, 0.531, 1.137, 0.384, 0.256, 0.272),
    "1/32": (1.037, 0.281, 0.591, 0.221, 0.146, 0.166),
    "1/64": (0.537, 0.156, 0.303, 0.129, 0.085, 0.093),
}
RECIPES = (
    ("original (fp32)", {}),
    ("quantized (int8 dynamic, per tensor)", {"fmt": "int8"}),
    ("pruned 50% (bitmap)", {"sparsity": 0.5, "storage": "bitmap"}),
    ("clustered 32", {"clusters": 32}),
    ("quantized + pruned 50% (bitmap)", {"fmt": "int8", "sparsity": 0.5, "storage": "bitmap"}),
    ("quantized + clustered 32", {"fmt": "int8", "clusters": 32}),
)
ALSO = (
    ("pruned 50% (TFLite CSR)", {"sparsity": 0.5, "storage": "sparse"}),
    ("quantized + pruned 50% (TFLite CSR)", {"fmt": "int8", "sparsity": 0.5, "storage": "sparse"}),
    ("quantized (int8, per channel)", {"fmt": "int8", "scales": "channel"}),
)


def _size(layers: list, recipe: dict) -> int:  # type: ignore[type-arg]
    options = dict(recipe)
    fmt = options.pop("fmt", "fp32")
    return model_bytes(layers, fmt, **options)


def csinet_table() -> str:
    lines = [
        "| gamma | model | printed (MB) | estimated (MiB) | gap |",
        "|---|---|---:|---:|---:|",
    ]
    reductions: dict[str, list[float]] = {"quantized": [], "quantized + pruned": []}
    for gamma, printed in CSINET_PRINTED.items():
        layers = resolve(csinet(gamma))
        base = model_bytes(layers)
        for (name, recipe), value in zip(RECIPES, printed, strict=True):
            size = _size(layers, recipe) / MIB
            lines.append(
                f"| {gamma} | {name} | {value:.3f} | {size:.3f} | {size / value - 1:+.1%} |"
            )
        for name, recipe in ALSO:
            lines.append(f"| {gamma} | {name} | – | {_size(layers, recipe) / MIB:.3f} | |")
        reductions["quantized"].append(1 - _size(layers, RECIPES[1][1]) / base)
        reductions["quantized + pruned"].append(1 - _size(layers, RECIPES[4][1]) / base)
    lines.append("")
    printed_reduction = {"quantized": 0.731, "quantized + pruned": 0.865}
    for name, values in reductions.items():
        mean = sum(values) / len(values)
        lines.append(
            f"- mean size reduction, {name}: estimated {mean:.1%}, "
            f"printed {printed_reduction[name]:.1%}"
        )
    return "\n".join(lines)


def detnet_table() -> str:
    lines = [
        "| layers | params | estimated MB (10^6 B) | MiB | MACs | FLOPs (2 x MACs) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for count in (30, 40, 50, 60, 70, 80, 90):
        layers = resolve(detnet(layers=count))
        size = model_bytes(layers)
        flops = flops_summary(layers)
        params = sum(r.params for r in layers)
        lines.append(
            f"| {count} | {params} | {size / 1e6:.3f} | {size / MIB:.3f} | {flops['macs']} "
            f"| {flops['flops']:.3g} |"
        )
    return "\n".join(lines)


# The green-DetNet paper's Table I: R-I-DetNet(SGL) with x layers -> (memory MB, FLOPs),
# and its Table II rows for DetNet and R-I-DetNet(SGL)-50L.
SGL_PRINTED = {
    30: (0.0766, 0.56e6),
    40: (0.0939, 0.72e6),
    50: (0.1072, 0.89e6),
    60: (0.1225, 1.05e6),
    70: (0.1429, 1.22e6),
    80: (0.1634, 1.39e6),
    90: (0.1838, 1.57e6),
}
SGL_TABLE2 = {"DetNet": (9.19, 4.9e6), "R-I-DetNet(SGL)-50L": (0.10, 0.9e6)}


def sgl_estimate(count: int, kept: float, sparsity: float = 0.0) -> tuple[int, int]:
    """Stored bytes (fp32, each kernel's surviving input groups dense plus a bitmap of
    them) and FLOPs (2 x MACs of the surviving groups' dense kernels) of DetNet with
    `count` layers when the fraction `kept` of every kernel's input groups survives sparse
    group LASSO; with `sparsity`, the surviving kernels are then element-pruned and stored
    in TFLite's CSR encoding (the combined recipe of `phymem compress`)."""
    layers = resolve(detnet(layers=count))
    storage = "sparse" if sparsity else "dense"
    size = group_pruned_bytes(layers, 1 - kept, sparsity=sparsity, storage=storage)
    return size, 2 * structured_macs(layers, 1 - kept)


def kept_for_flops(count: int, flops: float) -> float:
    """The surviving group fraction whose FLOPs are closest to `flops` (bisection: FLOPs
    grow with the groups kept)."""
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if sgl_estimate(count, middle)[1] < flops:
            low = middle
        else:
            high = middle
    return high


def removed_for_flops(count: int, flops: float) -> float:
    """`1 - kept_for_flops`, cut to 6 decimals (fewer groups removed, never more), so that
    `phymem compress --group-prune` given the printed value removes the same groups."""
    return floor((1 - kept_for_flops(count, flops)) * 10**6) / 10**6


# The element sparsity is fitted at this row of Table II (memory, FLOPs) and predicted
# everywhere else.
SGL_FIT_ROW, SGL_FIT_LAYERS = "R-I-DetNet(SGL)-50L", 50


def fit_element_sparsity(count: int, removed: float, target_bytes: float) -> float:
    """The smallest element sparsity (4 decimals) at which DetNet with `count` layers, the
    fraction `removed` of its input groups cut, stores in at most `target_bytes` (CSR)."""
    layers = resolve(detnet(layers=count))

    def size(steps: int) -> int:
        return group_pruned_bytes(layers, removed, sparsity=steps / 10**4, storage="sparse")

    low, high = 0, 10**4 - 1
    if size(high) > target_bytes:
        raise ValueError(f"{target_bytes} B is below the combined recipe's floor {size(high)} B")
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if size(middle) <= target_bytes else (middle + 1, high)
    return low / 10**4


def sgl_fit() -> tuple[float, float]:
    """(groups removed, element sparsity) fitted at SGL_FIT_ROW: the groups from its
    printed FLOPs, then the sparsity from its printed MB."""
    memory, flops = SGL_TABLE2[SGL_FIT_ROW]
    removed = removed_for_flops(SGL_FIT_LAYERS, flops)
    return removed, fit_element_sparsity(SGL_FIT_LAYERS, removed, memory * 1e6)


def sgl_breakdown(count: int, removed: float, sparsity: float) -> dict[str, int]:
    """Where the combined recipe's bytes go: kernels (CSR values and indices), the
    bitmaps of groups kept, and the float32 biases and thresholds (never pruned)."""
    layers = resolve(detnet(layers=count))
    tensors = weight_tensors(layers)
    masks = sum(-(-t.input_groups // 8) for t in tensors if t.kernel)
    biases = sum(tensor_bytes(t) for t in tensors if not t.kernel)
    total = group_pruned_bytes(layers, removed, sparsity=sparsity, storage="sparse")
    return {"kernels": total - masks - biases, "group_masks": masks, "biases": biases}


def sgl_table() -> str:
    """R-I-DetNet(SGL) at 30..90 layers: the printed memory and FLOPs; the groups each
    row's printed FLOPs imply; the memory the combined recipe predicts there with the
    element sparsity fitted once at SGL_FIT_ROW; and the fitted recipe applied unchanged
    at every depth (FLOPs and memory both predicted)."""
    fit_removed, sparsity = sgl_fit()
    lines = [
        "| layers | printed MB | printed FLOPs | groups removed (from printed FLOPs) "
        "| FLOPs at them (est.) | MB, surviving groups dense (est.) "
        f"| MB predicted, then {sparsity:.2%} element pruning (CSR) | vs printed "
        f"| FLOPs, {SGL_FIT_LAYERS}L recipe unchanged | vs printed "
        f"| MB, {SGL_FIT_LAYERS}L recipe unchanged | vs printed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, (memory, flops) in SGL_PRINTED.items():
        removed = removed_for_flops(count, flops)
        dense_bytes, found_flops = sgl_estimate(count, 1 - removed)
        predicted = sgl_estimate(count, 1 - removed, sparsity)[0] / 1e6
        same_bytes, same_flops = sgl_estimate(count, 1 - fit_removed, sparsity)
        lines.append(
            f"| {count} | {memory:.4f} | {flops:.3g} | {removed:.6f} | {found_flops:.3g} "
            f"| {dense_bytes / 1e6:.3f} | {predicted:.4f} | {predicted / memory - 1:+.1%} "
            f"| {same_flops:.3g} | {same_flops / flops - 1:+.1%} "
            f"| {same_bytes / 1e6:.4f} | {same_bytes / 1e6 / memory - 1:+.1%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(csinet_table())
    print()
    print(detnet_table())
    print()
    print(sgl_table())
