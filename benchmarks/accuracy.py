"""Accuracy of the estimator against TensorFlow's allocator peak, on two sets of configs.

(1) `grid`: a stratified grid covering every axis of the spec
(`benchmarks.accuracy_configs.grid`); (2) `held-out`: specs drawn by a seeded sampler over
the same axes (`benchmarks.accuracy_configs.sample`), with a fresh seed for every full
run, so no estimate can be tuned to a fixed list. Each config is measured `--runs` times
(5), each run a fresh process (`profilers.allocator.measure_in_subprocess`), in rounds
(every config gets its n-th run before any config its n+1-th).

Measuring and reporting are separate steps. `measure` only fills the cache (one JSON
file, rewritten after every run, so an interrupted run resumes where it stopped and other
tools can read it while it runs); `report` computes the estimates at report time, so the
report can be regenerated after any change to the estimator without measuring again:

    PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.accuracy measure --new-seed
    PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.accuracy measure   # resume
    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy report

The report (benchmarks/accuracy.md, benchmarks/accuracy.csv) gives, per set and per group
(family, optimizer, precision, batch band): the framework mode's error against the median
run, its coverage (the share of all measured processes at or below `upper_bytes`, target
100%) and its tightness (upper_bytes over the median run, target median <= 1.10). A
hand-written "## Status" section already in accuracy.md is kept.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import secrets
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.accuracy_configs import AnySpec, grid, sample
from estimator.engine import estimate
from estimator.spec import FamilySpec, canonical_json
from estimator.units import error_pct
from profilers.allocator import WARM_UP_STEPS, Measurement, measure_in_subprocess

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / "accuracy-cache.json"  # committed, so anyone can regenerate the report
HELD_OUT = 40
BANDS = ((1, 8), (9, 256), (257, 2048), (2049, 5000))


def label(spec: AnySpec) -> str:
    if isinstance(spec, FamilySpec):
        extra = "".join(
            f" {name}={getattr(spec, name)}"
            for name in ("nr", "n", "ht", "hr", "embedding_size")
            if getattr(spec, name) != FamilySpec.model_fields[name].default
        )
        shape = f"{spec.family} k={spec.k} nt={spec.nt}{extra}"
    else:
        layers = ",".join(
            f"d{layer.units}{layer.activation[:4]}"
            if layer.type == "dense"
            else f"emb{layer.input_dim}x{layer.output_dim}"
            if layer.type == "embedding"
            else layer.type
            for layer in spec.layers
        )
        shape = f"generic {spec.input_kind}{spec.input_size} [{layers}] {spec.loss}"
    return f"{shape} B={spec.batch} {spec.optimizer} {spec.precision}"


def group_family(spec: AnySpec) -> str:
    return spec.family if isinstance(spec, FamilySpec) else "generic"


def band(batch: int) -> str:
    low, high = next((lo, hi) for lo, hi in BANDS if lo <= batch <= hi)
    return f"batch {low}-{high}"


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"heldout_seed": None, "measurements": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def save(path: Path, cache: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(cache, indent=1, sort_keys=True))
    partial.replace(path)  # readers never see a half-written file


def sets(cache: dict[str, Any]) -> dict[str, list[AnySpec]]:
    """The grid, and the held-out specs as drawn when the seed was (kept in the cache)."""
    from profilers.allocator import parse_spec

    held_out = [parse_spec(text) for text in cache["heldout_specs"]]
    return {"grid": grid(), "held-out": held_out}


def measure(args: argparse.Namespace) -> int:
    cache = load(args.cache)
    if args.seed is not None:
        seed = args.seed
    elif args.new_seed or cache.get("heldout_seed") is None:
        seed = secrets.randbits(32)
    else:
        seed = int(cache["heldout_seed"])  # resume the run that drew it
    if seed != cache.get("heldout_seed") or "heldout_specs" not in cache:
        cache["heldout_started"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        cache["heldout_specs"] = [canonical_json(s) for s in sample(seed, HELD_OUT)]
    cache["heldout_seed"] = seed
    cache["runs"], cache["steps"] = args.runs, args.steps
    print(f"held-out seed {seed}", flush=True)
    stored: dict[str, list[dict[str, Any]]] = cache.setdefault("measurements", {})
    specs = [spec for members in sets(cache).values() for spec in members]
    for round_ in range(1, args.runs + 1):
        for spec in specs:  # round-robin: every config gets its n-th run before any n+1-th
            runs = stored.setdefault(canonical_json(spec), [])
            while len(runs) < round_:
                m = measure_in_subprocess(spec, steps=args.steps, timeout_s=args.timeout)
                print(
                    f"[{round_}] {label(spec)}: {m.status} {m.peak_bytes} ({m.step_time_s})",
                    flush=True,
                )
                runs.append(asdict(m))
                save(args.cache, cache)
    save(args.cache, cache)
    return 0


def _upper(result: Any) -> int:
    """The estimate's bound over execution orders (`upper_bytes`)."""
    return int(result.upper_bytes)


def rows_for(specs: list[AnySpec], stored: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        all_runs = [Measurement.from_dict(d) for d in stored.get(canonical_json(spec), [])]
        chosen = all_runs[:runs]
        ok = [m.peak_bytes for m in chosen if m.status == "ok" and m.peak_bytes]
        framework = estimate(spec, "framework")
        row: dict[str, Any] = {
            "config": label(spec),
            "spec": canonical_json(spec),
            "family": group_family(spec),
            "optimizer": spec.optimizer,
            "precision": spec.precision,
            "batch": spec.batch,
            "band": band(spec.batch),
            "runs": ok,
            "failed": [
                m.status + ": " + (m.error or "")[-200:] for m in chosen if m.status != "ok"
            ],
            "peak_bytes": framework.total_bytes,
            "upper_bytes": _upper(framework),
            "paper_bytes": estimate(spec, "paper").total_bytes,
            "step_time_s": statistics.median([m.step_time_s or 0.0 for m in chosen])
            if chosen
            else None,
        }
        if ok:
            measured = statistics.median_low(ok)  # a measured value
            row["measured_bytes"] = measured
            row["error_pct"] = error_pct(row["peak_bytes"], measured)
            row["paper_error_pct"] = error_pct(row["paper_bytes"], measured)
            row["covered"] = sum(run <= row["upper_bytes"] for run in ok)
            row["tightness"] = row["upper_bytes"] / measured
            row["spread_pct"] = 100.0 * (max(ok) - min(ok)) / min(ok)
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if r.get("runs")]
    if not done:
        return {"configs": 0}
    errors = [abs(r["error_pct"]) for r in done]
    processes = sum(len(r["runs"]) for r in done)
    return {
        "configs": len(done),
        "processes": processes,
        "median_error": statistics.median(errors),
        "max_error": max(errors),
        "coverage": 100.0 * sum(r["covered"] for r in done) / processes,
        "tightness_median": statistics.median(r["tightness"] for r in done),
        "tightness_max": max(r["tightness"] for r in done),
        "paper_median_error": statistics.median(abs(r["paper_error_pct"]) for r in done),
    }


def _summary_row(name: str, s: dict[str, Any]) -> str:
    if not s["configs"]:
        return f"| {name} | 0 | - | - | - | - | - |"
    return (
        f"| {name} | {s['configs']} | {s['median_error']:.2f}% | {s['max_error']:.2f}% | "
        f"{s['coverage']:.1f}% ({s['processes']}) | {s['tightness_median']:.3f} | "
        f"{s['tightness_max']:.3f} |"
    )


GROUP_HEADER = [
    "| group | configs | median abs error | max abs error | coverage (processes) | "
    "tightness median | tightness max |",
    "|---|---:|---:|---:|---:|---:|---:|",
]


def section(title: str, rows: list[dict[str, Any]], runs: int) -> list[str]:
    lines = [f"## {title}", "", *GROUP_HEADER, _summary_row("all", summarize(rows))]
    for key in ("family", "optimizer", "precision", "band"):
        for value in sorted({r[key] for r in rows}):
            among = [r for r in rows if r[key] == value]
            name = value if key in ("band", "precision") else f"{key} {value}"
            lines.append(_summary_row(name, summarize(among)))
    counts = sorted({len(r["runs"]) for r in rows})
    spread = ", ".join(f"{sum(len(r['runs']) == n for r in rows)} with {n}" for n in counts)
    lines += [
        "",
        f"Successful runs per config (target {runs}): {spread}.",
        "",
        "| config | runs (bytes) | median | peak_bytes | error | upper_bytes | upper / median "
        "| covered | paper error | step s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r["runs"]:
            reason = r["failed"][0] if r["failed"] else "not measured yet"
            lines.append(
                f"| {r['config']} | {reason} | | {r['peak_bytes']} | | {r['upper_bytes']} | | | | |"
            )
            continue
        lines.append(
            f"| {r['config']} | {', '.join(str(b) for b in r['runs'])} | {r['measured_bytes']} | "
            f"{r['peak_bytes']} | {r['error_pct']:+.2f}% | {r['upper_bytes']} | "
            f"{r['tightness']:.3f} | {r['covered']}/{len(r['runs'])} | "
            f"{r['paper_error_pct']:+.0f}% | {r['step_time_s']:.3f} |"
        )
    return [*lines, ""]


CSV_FIELDS = [
    "set",
    "config",
    "spec",
    "family",
    "optimizer",
    "precision",
    "batch",
    "measured_bytes",
    "peak_bytes",
    "error_pct",
    "upper_bytes",
    "tightness",
    "covered",
    "runs",
    "paper_bytes",
    "paper_error_pct",
    "step_time_s",
]


def header(cache: dict[str, Any], cache_path: str, runs: int) -> list[str]:
    """The report's opening: commands, seed, engine, machine and what was measured."""
    from estimator.engine import engine_version

    stored = cache.get("measurements", {})
    first = next(
        (Measurement.from_dict(d) for v in stored.values() for d in v if d["status"] == "ok"),
        Measurement(status="failed"),
    )
    basis = estimate(grid()[0], "framework").basis
    return [
        "# Estimator accuracy against TensorFlow's allocator peak",
        "",
        "- Measured by: `PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.accuracy "
        f"measure --new-seed` (cache `{cache_path}`, committed); this report by "
        f"`PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy report --cache {cache_path}`",
        f"- Held-out seed: **{cache.get('heldout_seed')}** (drawn "
        f"{cache.get('heldout_started', '?')}); report written "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"engine {engine_version()}, framework basis `{basis}`",
        f"- Machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"{(first.device_total_bytes or 0) / 2**30:.1f} GiB RAM), device {first.device}, "
        f"TensorFlow {first.tf_version}",
        "- Measurement: `profilers.allocator.measure_in_subprocess`, a fresh process per run "
        "(TF's BFC CPU allocator, oneDNN on, one thread, single-threaded executor where the "
        f"graph allows it, {WARM_UP_STEPS} warm-up steps, peak = max over "
        f"{cache.get('steps', 2)} measured steps of `get_memory_info('CPU:0')['peak']`); a "
        f"config's measured value is the median (low) of its {runs} runs.",
        "- Error = (peak_bytes - median run) / median run. Coverage = the share of all "
        "measured processes at or below upper_bytes (target 100%). Tightness = upper_bytes / "
        "median run (target median <= 1.10).",
        "",
    ]


def write_csv(path: Path, by_set: dict[str, list[dict[str, Any]]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for name, rows in by_set.items():
            for r in rows:
                writer.writerow({**r, "set": name, "runs": " ".join(map(str, r["runs"]))})


def write_markdown(target: Path, lines: list[str]) -> None:
    """Write the report, keeping the hand-written Status section of the previous one."""
    previous = target.read_text() if target.exists() else ""
    status = previous.find("\n## Status")
    if status >= 0:
        lines = [*lines, previous[status + 1 :].rstrip("\n")]
    target.write_text("\n".join(lines).rstrip("\n") + "\n")


def report(args: argparse.Namespace) -> int:
    cache = load(args.cache)
    seed = cache.get("heldout_seed")
    if seed is None:
        print(f"{args.cache}: no measurements yet (run `measure` first)", file=sys.stderr)
        return 2
    runs = int(cache.get("runs", 5))
    stored = cache.get("measurements", {})
    by_set = {name: rows_for(specs, stored, runs) for name, specs in sets(cache).items()}
    lines = [*header(cache, os.path.relpath(args.cache), runs), "## Summary", "", *GROUP_HEADER]
    lines += [_summary_row(name, summarize(rows)) for name, rows in by_set.items()]
    paper = ", ".join(
        f"{name} {summarize(rows).get('paper_median_error', float('nan')):.0f}%"
        for name, rows in by_set.items()
    )
    lines += ["", f"Paper mode, median abs error: {paper}", ""]
    lines += section("Set 1: stratified grid", by_set["grid"], runs)
    lines += section(f"Set 2: held-out sample (seed {seed})", by_set["held-out"], runs)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "accuracy.csv", by_set)
    write_markdown(args.out / "accuracy.md", lines)
    for name, rows in by_set.items():
        s = summarize(rows)
        if s["configs"]:
            print(
                f"{name}: {s['configs']} configs, median {s['median_error']:.2f}% max "
                f"{s['max_error']:.2f}%, coverage {s['coverage']:.1f}%, tightness median "
                f"{s['tightness_median']:.3f}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure", help="fill the measurement cache (resumable)")
    run.add_argument("--runs", type=int, default=5, help="fresh processes per config")
    run.add_argument("--steps", type=int, default=2, help="measured steps per process")
    run.add_argument("--timeout", type=float, default=120.0, help="seconds per process")
    chosen = run.add_mutually_exclusive_group()
    chosen.add_argument("--seed", type=int, default=None, help="held-out seed (default fresh)")
    chosen.add_argument("--new-seed", action="store_true", help="a fresh held-out seed")
    out = commands.add_parser("report", help="estimates now, against the cache")
    out.add_argument("--out", type=Path, default=HERE)
    for command in (run, out):
        command.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    return measure(args) if args.command == "measure" else report(args)


if __name__ == "__main__":
    sys.exit(main())
