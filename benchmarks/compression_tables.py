"""The CsiNet and DetNet papers' printed sizes and FLOPs beside the estimator's.

`python benchmarks/compression_tables.py` prints the markdown tables of docs/compression.md.
Estimates only (no model is built); MB in the CsiNet rows is MiB (2^20 bytes), which is how
the printed originals match the parameter counts; the DetNet rows show both.
"""

from __future__ import annotations

from estimator.compression import model_bytes
from estimator.families import csinet, detnet
from estimator.flops import flops_summary
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


if __name__ == "__main__":
    print(csinet_table())
    print()
    print(detnet_table())
