"""Every framework-mode miss of benchmarks/accuracy.md, explained by a trace.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy_misses [--cache C] [--out F]

For each config whose peak_bytes is off its median run by more than the accuracy target
(5%), one fresh process is traced (`python -m profilers.trace record`, TF's profiler on) and
`profilers.trace.explain` sets the tensors alive at that process's peak beside those alive
at the model's simulated peak. A miss then reads as one of:

- `layout draw`: the model is within 2% of the traced process's peak, and that process (or
  some of the config's measured runs) landed on another layout than the median run: the
  same tensors, other chunks (BFC hands a request a whole free chunk under twice its size).
- `chunk layout`: most of the difference is in the chunks of tensors both hold: the
  model's simulated heap hands some tensor a bigger (or smaller) chunk than TensorFlow's
  did, because the runtime's small tensors it does not model fill other gaps.
- `sequence`: the model's live set differs from TensorFlow's at the peak: the unmatched
  tensors, by op (traced) and by row (modelled), say which allocation the model lacks or
  has too many of.

The file it writes (benchmarks/accuracy-misses.md) is regenerated whole; the traces are
kept under the folder given by --traces so a miss can be read event by event
(`python -m profilers.trace explain SPEC TRACE`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.accuracy import DEFAULT_CACHE, load, rows_for, sets
from benchmarks.results import machine
from profilers.allocator import REPO_ROOT, parse_spec
from profilers.trace import Explanation, explain

TARGET_PCT = 5.0  # the max |error|
SAME_LAYOUT_PCT = 2.0  # model vs the traced process: "the same peak"
SHOWN = 6  # unmatched tensors listed per side


def record(spec_json: str, folder: Path, name: str) -> dict[str, Any]:
    """A trace of one fresh process (cached in `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, trace_path = folder / f"{name}.json", folder / f"{name}.trace.json"
    if not trace_path.exists():
        spec_path.write_text(spec_json)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "profilers.trace", "record", str(spec_path)]
        subprocess.run(
            [*command, str(trace_path)], check=True, capture_output=True, env=env, cwd=REPO_ROOT
        )
    data: dict[str, Any] = json.loads(trace_path.read_text())
    return data


def kind(found: Explanation) -> str:
    """`layout draw` or `sequence` (see the module docstring)."""
    traced = found.traced_peak
    if abs(found.modelled_peak - traced) <= SAME_LAYOUT_PCT / 100 * traced:
        return "layout draw"
    if abs(found.chunk_gap) > abs(found.tensor_gap):
        return "chunk layout"
    return "sequence"


def section(row: dict[str, Any], found: Explanation) -> list[str]:
    verdict = kind(found)
    traced = found.traced_peak
    lines = [
        f"### {row['config']}",
        "",
        f"- runs: {', '.join(str(b) for b in row['runs'])}; median {row['measured_bytes']}; "
        f"peak_bytes {row['peak_bytes']} ({row['error_pct']:+.2f}%); upper_bytes "
        f"{row['upper_bytes']} (covers {row['covered']}/{len(row['runs'])})",
        f"- traced process: peak {traced}; model vs it "
        f"{100 * (found.modelled_peak - traced) / traced:+.2f}%; **{verdict}**",
        f"- {found.verdict()}",
    ]
    for title, side in (
        ("TF holds, model not", found.traced_only),
        ("model holds, TF not", found.modelled_only),
    ):
        big = [held for held in side if held.chunk > 1024][:SHOWN]
        if big:
            shown = "; ".join(f"{h.requested} B {h.source}" for h in big)
            lines.append(f"- {title}: {shown}")
    if verdict != "sequence" and found.traced_unsplit:
        shown = "; ".join(
            f"{h.requested} B in a {h.chunk} B chunk ({h.source})" for h in found.traced_unsplit[:3]
        )
        lines.append(f"- TF's unsplit chunks, most slack first: {shown}")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", default=str(Path(__file__).with_name("accuracy-misses.md")))
    parser.add_argument("--traces", default=str(REPO_ROOT / ".phymem-traces"))
    args = parser.parse_args(argv)
    cache = load(Path(args.cache))
    shown_cache = os.path.relpath(args.cache, REPO_ROOT)
    lines = [
        "# Framework-mode misses, explained by traces",
        "",
        f"- Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy_misses --cache "
        f"{shown_cache}`",
        f"- Held-out seed {cache.get('heldout_seed')}; {machine()}",
        f"- A miss: |peak_bytes - median run| > {TARGET_PCT:.0f}% of the median run. "
        "`layout draw`: the model is within "
        f"{SAME_LAYOUT_PCT:.0f}% of a traced fresh process, whose allocator layout (chunk sizes) "
        "differs from the median run's; `chunk layout`: the same tensors in chunks of other sizes "
        "than the model's heap gives them; `sequence`: the live tensors at the two peaks differ "
        "(listed, tensors over 1 KiB).",
        "",
    ]
    counts: dict[str, int] = {}
    for set_name, specs in sets(cache).items():
        rows = [r for r in rows_for(specs, cache["measurements"], 5) if r.get("runs")]
        missed = [r for r in rows if abs(r["error_pct"]) > TARGET_PCT]
        lines += [f"## {set_name}: {len(missed)} of {len(rows)} configs miss", ""]
        for n, row in enumerate(missed):
            data = record(row["spec"], Path(args.traces), f"{set_name}-{n}")
            found = explain(data, parse_spec(row["spec"]))
            verdict = kind(found)
            counts[verdict] = counts.get(verdict, 0) + 1
            lines += section(row, found)
            print(f"{set_name} {row['config']}: {verdict}", flush=True)
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    lines.insert(5, f"- Misses by kind: {summary or 'none'}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
