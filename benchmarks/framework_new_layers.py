"""Framework mode on CsiNet's layer types (conv2d, reshape, flatten, leaky_relu, residual)
and on DetNet's training graph (detnet_layer, the detnet loss) against TensorFlow's
allocator peak.

Each config is measured `--runs` times (5), each run a fresh process
(`profilers.allocator.measure_in_subprocess`, 2 measured steps as the model replays);
the runs are cached in benchmarks/framework-new-layers-cache.json (rewritten after every
run, so an interrupted measurement resumes), and the report is computed from the cache
with the estimator as it is at report time:

    PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.framework_new_layers measure
    PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.framework_new_layers measure \
        --only detnet                                   # DetNet's configs only
    PYTHONPATH=. .venv/bin/python -m benchmarks.framework_new_layers report

The report (benchmarks/framework_new_layers.md) gives per config the median run, the
framework estimate (`peak_bytes`) and its error, `upper_bytes`, and the coverage (runs at
or below `upper_bytes`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from estimator.engine import estimate
from estimator.families import csinet, detnet
from estimator.spec import ModelSpec, canonical_json
from estimator.units import error_pct
from profilers.allocator import measure_in_subprocess

HERE = Path(__file__).resolve().parent
CACHE = HERE / "framework-new-layers-cache.json"
REPORT = HERE / "framework_new_layers.md"
STEPS = 2  # estimator.steps.MEASURED_STEPS


def _generic(name: str, data: dict[str, Any]) -> tuple[str, ModelSpec]:
    return name, ModelSpec.model_validate({"loss": "mse", "input_kind": "real", **data})


def _conv(filters: int, **extra: Any) -> dict[str, Any]:
    return {"type": "conv2d", "filters": filters, "kernel": 3, **extra}


def _csinet() -> list[tuple[str, ModelSpec]]:
    found: list[tuple[str, ModelSpec]] = []
    for gamma in ("1/4", "1/16"):
        for batch in (1, 32, 200):
            spec = ModelSpec.model_validate_json(canonical_json(csinet(gamma, batch=batch)))
            found.append((f"csinet gamma={gamma} B={batch}", spec))
    return found


RESHAPE_16 = {"type": "reshape", "target": [16, 16, 4]}
GENERIC: list[tuple[str, dict[str, Any]]] = [
    (
        "conv2d 8 3x3 + flatten + dense, adam B=64",
        {
            "input_size": 1024,
            "batch": 64,
            "layers": [RESHAPE_16, _conv(8), {"type": "flatten"}, {"type": "dense", "units": 64}],
        },
    ),
    (
        "conv2d 16 relu stride 2 valid + leaky_relu, sgd B=16",
        {
            "input_size": 2048,
            "batch": 16,
            "optimizer": "sgd",
            "layers": [
                {"type": "reshape", "target": [32, 32, 2]},
                _conv(16, activation="relu", stride=2, padding="valid"),
                {"type": "leaky_relu", "alpha": 0.1},
                {"type": "flatten"},
                {"type": "dense", "units": 32},
            ],
        },
    ),
    (
        "dense + residual(conv, batch_norm, leaky_relu), momentum B=128",
        {
            "input_size": 256,
            "batch": 128,
            "optimizer": "momentum",
            "layers": [
                {"type": "dense", "units": 1024},
                {"type": "reshape", "target": [8, 8, 16]},
                {
                    "type": "residual",
                    "layers": [
                        _conv(16),
                        {"type": "batch_norm"},
                        {"type": "leaky_relu"},
                    ],
                },
                {"type": "flatten"},
                {"type": "dense", "units": 256},
            ],
        },
    ),
    (
        "flat residual(dense relu, dense) + leaky_relu, adam B=256",
        {
            "input_size": 512,
            "batch": 256,
            "layers": [
                {"type": "dense", "units": 512},
                {
                    "type": "residual",
                    "layers": [
                        {"type": "dense", "units": 512, "activation": "relu"},
                        {"type": "dense", "units": 512},
                    ],
                },
                {"type": "leaky_relu"},
                {"type": "dense", "units": 512},
            ],
        },
    ),
]


# DetNet (the `detnet` family: its training graph, Eq. (4) loss): (K, N, L, B, optimizer).
# The first two are the configs estimator/detnet_steps.py's rules were read off; the
# others are off that grid (other K, L, B and optimizers).
DETNET_TRACED = (
    (4, 6, 2, 64, "adam"),
    (3, 5, 3, 100, "adam"),
    (3, 5, 3, 100, "sgd"),
    (3, 5, 3, 100, "none"),
)
DETNET_OFF_GRID = (
    (4, 6, 3, 256, "adam"),
    (8, 12, 6, 300, "adam"),
    (20, 30, 10, 1000, "adam"),
    (20, 30, 3, 64, "adam"),
    (20, 30, 5, 500, "sgd"),
    (12, 16, 8, 200, "none"),
    (6, 8, 4, 2000, "adam"),
)


def _detnet() -> list[tuple[str, ModelSpec]]:
    found: list[tuple[str, ModelSpec]] = []
    for traced, group in ((True, DETNET_TRACED), (False, DETNET_OFF_GRID)):
        for k, n, layers, batch, optimizer in group:
            spec = detnet(k, n, layers, batch=batch, optimizer=optimizer)
            mark = " (traced)" if traced else ""
            found.append((f"detnet K={k} L={layers} B={batch} {optimizer}{mark}", spec))
    return found


def configs() -> list[tuple[str, ModelSpec]]:
    """CsiNet as the issue lists it, single-layer-type generic specs, then DetNet."""
    return _csinet() + [_generic(name, data) for name, data in GENERIC] + _detnet()


def _load() -> dict[str, list[dict[str, Any]]]:
    if CACHE.exists():
        data: dict[str, list[dict[str, Any]]] = json.loads(CACHE.read_text())
        return data
    return {}


def measure(runs: int, only: str = "") -> None:
    cache = _load()
    for round_ in range(runs):
        for name, spec in configs():
            if not name.startswith(only):
                continue
            done = cache.setdefault(canonical_json(spec), [])
            if len(done) > round_:
                continue
            result = measure_in_subprocess(spec, steps=STEPS)
            done.append(
                {
                    "status": result.status,
                    "peak_bytes": result.peak_bytes,
                    "executor": result.executor,
                    "error": result.error,
                }
            )
            CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True))
            print(name, result.status, result.peak_bytes, flush=True)


def _row(name: str, spec: ModelSpec, runs: list[dict[str, Any]]) -> dict[str, Any]:
    peaks = [run["peak_bytes"] for run in runs if run["status"] == "ok"]
    result = estimate(spec, "framework")
    median = statistics.median(peaks)
    upper = result.upper_bytes
    return {
        "name": name,
        "runs": len(peaks),
        "median": median,
        "min": min(peaks),
        "max": max(peaks),
        "peak_bytes": result.total_bytes,
        "error": error_pct(result.total_bytes, median),
        "upper_bytes": upper,
        "covered": sum(peak <= upper for peak in peaks),
        "tightness": upper / median,
    }


def report() -> str:
    cache = _load()
    rows = [
        _row(name, spec, cache[canonical_json(spec)])
        for name, spec in configs()
        if cache.get(canonical_json(spec))
    ]
    lines = [
        "# Framework mode on CsiNet's layer types and DetNet",
        "",
        "Generated by `PYTHONPATH=. .venv/bin/python -m benchmarks.framework_new_layers "
        "report` from the runs in `benchmarks/framework-new-layers-cache.json` (measured "
        "with `... measure`: 5 fresh processes per config, "
        "`profilers.allocator.measure_in_subprocess`, TF 2.21 CPU, oneDNN on, BFC "
        "allocator, single-threaded executor, 2 measured steps). Error: the framework "
        "estimate (`peak_bytes`) against the median run.",
        "",
        "| config | runs | median | min | max | peak_bytes | error | upper_bytes | "
        "covered | upper / median |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['runs']} | {r['median']:,} | {r['min']:,} | {r['max']:,} | "
            f"{r['peak_bytes']:,} | {r['error']:+.2f}% | {r['upper_bytes']:,} | "
            f"{r['covered']}/{r['runs']} | {r['tightness']:.2f} |"
        )
    detnet_rows = [r for r in rows if r["name"].startswith("detnet")]
    lines += _summary("All configs", rows)
    lines += _summary("CsiNet's layer types", [r for r in rows if r not in detnet_rows])
    lines += _summary("DetNet", detnet_rows)
    off_grid = [r for r in detnet_rows if "(traced)" not in r["name"]]
    lines += _summary("DetNet off the traced configs", off_grid)
    lines += [
        "",
        "DetNet (`--family detnet`: its training graph, every layer's x_hat out, Eq. (4) "
        "loss; `profilers.builders.build` compiles the same graph as the training job): "
        "the configs marked (traced) are the ones estimator/detnet_steps.py's rules were "
        "read off (`python -m profilers.trace record`); the others were not used.",
    ]
    return "\n".join(lines) + "\n"


def _summary(title: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    errors = sorted(abs(r["error"]) for r in rows)
    total = sum(r["runs"] for r in rows)
    covered = sum(r["covered"] for r in rows)
    return [
        "",
        f"{title}: median |error| {statistics.median(errors):.2f}%, max {errors[-1]:.2f}% "
        f"over {len(rows)} configs; coverage {covered}/{total} runs "
        f"({100 * covered / total:.0f}%); tightness median "
        f"{statistics.median(r['tightness'] for r in rows):.2f}.",
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("measure", "report"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="", help="measure the configs named with this prefix")
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args.runs, args.only)
    text = report()
    if args.command == "report":
        status = ""
        if REPORT.exists() and "## Status" in REPORT.read_text():
            status = "\n## Status" + REPORT.read_text().split("## Status", 1)[1]
        REPORT.write_text(text + status)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
