"""Whole-process traces of TensorFlow's allocator: what the framework mode is checked against.

    python -m profilers.trace record SPEC.json OUT.json   # measure with TF's profiler on
    python -m profilers.trace replay OUT.json             # through estimator.framework's BFC
    python -m profilers.trace diff A.json B.json          # where two processes part
    python -m profilers.trace explain SPEC.json OUT.json  # traced peak vs modelled peak

`record` measures a spec as `profilers.allocator` does (same settings: run it in a fresh
process) with TensorFlow's profiler on, and keeps every allocation and deallocation of the
CPU allocator in order: requested and allocated bytes, address, the allocator's bytes in use
after the event, and the op. `replay` runs the sequence through the framework mode's model
of the BFC allocator (`estimator.bfc.Bfc`) and counts the events where the model's
chunk size or bytes in use differ from TensorFlow's: zero means the allocator model is exact
and any error of the framework mode lies in the sequence it generates. `diff` finds the
first event where two traces of one spec differ, which is how the per-process differences
described in `profilers/allocator.py` were found. `explain` sets the tensors alive at the
traced process's peak beside those alive at the framework mode's simulated peak, matched by
size: what TensorFlow holds that the model does not (by op), what the model holds that
TensorFlow does not (by layer and category), and the bytes each side loses to chunks BFC
did not split. It is how benchmarks/accuracy-misses.md explains each estimate off by more
than the accuracy target.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from estimator.spec import FamilySpec, ModelSpec

Event = dict[str, Any]


def record(spec: FamilySpec | ModelSpec, steps: int = 2) -> dict[str, Any]:
    """Measure `spec` in this process with the profiler on; the measurement and its events."""
    from profilers import allocator

    for key, value in allocator.child_env("CPU:0").items():
        os.environ.setdefault(key, value)
    import tensorflow as tf

    allocator.pin_threads(tf)  # before the profiler starts TensorFlow's runtime
    folder = tempfile.mkdtemp(prefix="phymem-trace-")
    tf.profiler.experimental.start(folder)
    try:
        measurement = allocator.measure(spec, steps=steps)
    finally:
        tf.profiler.experimental.stop()
    return {"measurement": measurement.__dict__, "events": _memory_events(folder)}


def _memory_events(folder: str) -> list[Event]:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(f"{folder}/plugins/profile/*/*.xplane.pb")
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    events: list[Event] = []
    for plane in space.planes:
        names = {key: value.name for key, value in plane.event_metadata.items()}
        stats = {key: value.name for key, value in plane.stat_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if name not in ("MemoryAllocation", "MemoryDeallocation"):
                    continue
                fields: Event = {"kind": "alloc" if name == "MemoryAllocation" else "free"}
                fields["t_ps"] = line.timestamp_ns * 1000 + event.offset_ps
                for stat in event.stats:
                    value_field = stat.WhichOneof("value")
                    value = getattr(stat, value_field) if value_field else None
                    if value_field == "ref_value":
                        value = stats.get(value)
                    fields[stats.get(stat.metadata_id, str(stat.metadata_id))] = value
                events.append(fields)
    events.sort(key=lambda event: event["t_ps"])
    return events


@dataclass
class Replay:
    events: int
    mismatches: int  # events where the model's chunk size or bytes in use differ
    first_mismatch: int | None
    model_peak: int
    traced_peak: int


def replay(events: list[Event]) -> Replay:
    """Run a traced sequence through the framework mode's BFC model, event by event."""
    from estimator.bfc import Bfc

    bfc, live = Bfc(), {}
    mismatches, first, model_peak, traced_peak = 0, None, 0, 0
    for n, event in enumerate(events):
        if event["kind"] == "alloc":
            chunk = live[event["addr"]] = bfc.allocate(int(event["requested_bytes"]))
            differs = chunk.size != int(event["allocation_bytes"])
        else:
            bfc.release(live.pop(event["addr"]))
            differs = False
        differs = differs or bfc.in_use != int(event["bytes_allocated"])
        if differs:
            mismatches += 1
            first = n if first is None else first
        model_peak = max(model_peak, bfc.in_use)
        traced_peak = max(traced_peak, int(event["bytes_allocated"]))
    return Replay(len(events), mismatches, first, model_peak, traced_peak)


def first_divergence(a: list[Event], b: list[Event]) -> int | None:
    """Index of the first event whose kind, requested size or op differs (None: none)."""

    def key(event: Event) -> tuple[Any, ...]:
        return event["kind"], event.get("requested_bytes"), event.get("tf_op")

    for n, (left, right) in enumerate(zip(a, b, strict=False)):
        if key(left) != key(right):
            return n
    return None if len(a) == len(b) else min(len(a), len(b))


@dataclass
class Held:
    """One tensor alive at a peak: requested bytes, the chunk it got, what made it."""

    requested: int
    chunk: int
    source: str


@dataclass
class Explanation:
    traced_peak: int
    modelled_peak: int
    traced_only: list[Held]  # alive at TF's peak, no tensor of that size at the model's
    modelled_only: list[Held]  # alive at the model's peak, none of that size at TF's
    traced_slack: int  # bytes of TF's chunks beyond their rounded requests
    modelled_slack: int
    traced_unsplit: list[Held]  # TF's tensors in chunks BFC did not split, most slack first

    @property
    def tensor_gap(self) -> int:
        """The part of the peaks' difference made by tensors only one side holds."""
        return sum(h.chunk for h in self.traced_only) - sum(h.chunk for h in self.modelled_only)

    @property
    def chunk_gap(self) -> int:
        """The rest: tensors both sides hold, in chunks of other sizes (the layout)."""
        return self.traced_peak - self.modelled_peak - self.tensor_gap

    def verdict(self) -> str:
        """What the difference consists of, in one line."""
        missing = sum(h.chunk for h in self.traced_only)
        extra = sum(h.chunk for h in self.modelled_only)
        gap = self.traced_peak - self.modelled_peak
        parts = [
            f"traced peak - modelled peak = {gap:+d} B ({self.tensor_gap:+d} B in tensors one "
            f"side holds, {self.chunk_gap:+d} B in the chunks of tensors both hold)"
        ]
        if missing:
            parts.append(f"{len(self.traced_only)} traced tensors ({missing} B) unmatched")
        if extra:
            parts.append(f"{len(self.modelled_only)} modelled tensors ({extra} B) unmatched")
        parts.append(
            f"unsplit-chunk slack traced {self.traced_slack} B, modelled {self.modelled_slack} B"
        )
        return "; ".join(parts)


def _op_label(op: str) -> str:
    """A traced op name without Keras' model prefix (gradients marked `grad:`)."""
    gradient = op.startswith("gradient_tape/")
    parts = [part for part in op.split("/") if part != "gradient_tape"]
    if parts and parts[0].startswith("phymem"):
        parts = parts[1:]
    return ("grad:" if gradient else "") + ("/".join(parts) or "(runtime)")


def traced_live(trace: dict[str, Any]) -> tuple[int, list[Held]]:
    """The tensors alive at the traced process's reported peak (its last event at it)."""
    events: list[Event] = trace["events"]
    peak = int(trace["measurement"]["peak_bytes"])
    at = max(n for n, event in enumerate(events) if int(event["bytes_allocated"]) == peak)
    live: dict[int, Held] = {}
    for event in events[: at + 1]:
        if event["kind"] == "alloc":
            live[event["addr"]] = Held(
                int(event["requested_bytes"]),
                int(event["allocation_bytes"]),
                _op_label(event.get("tf_op") or ""),
            )
        else:
            live.pop(event["addr"], None)
    return peak, list(live.values())


def modelled_live(spec: FamilySpec | ModelSpec) -> tuple[int, list[Held]]:
    """The tensors alive at the framework mode's simulated peak, named by row and category."""
    from estimator.engine import model_for
    from estimator.framework import FrameworkCostModel, simulate
    from estimator.layers import resolve

    model = model_for(spec, "framework")
    layers = resolve(model)
    trace = FrameworkCostModel().generate(model, layers)
    peak = simulate(trace)
    names = ["input", *(f"layers[{i}] {layer.type}" for i, layer in enumerate(layers)), "loss"]
    held = [
        Held(
            trace.tensors[t].size,
            chunk,
            f"{names[trace.tensors[t].layer]} {trace.tensors[t].category}",
        )
        for t, chunk in peak.live
    ]
    return peak.bytes, held


def explain(trace: dict[str, Any], spec: FamilySpec | ModelSpec) -> Explanation:
    """Match the two peaks' live tensors by rounded size; the rest is the difference."""
    from estimator.bfc import rounded_request

    traced_peak, traced = traced_live(trace)
    modelled_peak, modelled = modelled_live(spec)
    pool: dict[int, list[Held]] = {}
    for held in modelled:
        pool.setdefault(rounded_request(held.requested), []).append(held)
    traced_only = []
    for held in traced:
        same = pool.get(rounded_request(held.requested))
        if same:
            same.pop()
        else:
            traced_only.append(held)
    modelled_only = [held for group in pool.values() for held in group]

    def slack(side: list[Held]) -> int:
        return sum(held.chunk - rounded_request(held.requested) for held in side)

    unsplit = [held for held in traced if held.chunk > rounded_request(held.requested)]

    return Explanation(
        traced_peak,
        modelled_peak,
        sorted(traced_only, key=lambda h: -h.chunk),
        sorted(modelled_only, key=lambda h: -h.chunk),
        slack(traced),
        slack(modelled),
        sorted(unsplit, key=lambda h: rounded_request(h.requested) - h.chunk),
    )


def main(argv: list[str]) -> int:
    command, *paths = argv
    if command == "record":
        from profilers.allocator import parse_spec

        with open(paths[0]) as handle:
            spec = parse_spec(handle.read())
        with open(paths[1], "w") as handle:
            json.dump(record(spec), handle)
        return 0
    if command == "explain":
        from profilers.allocator import parse_spec

        with open(paths[0]) as handle:
            spec = parse_spec(handle.read())
        with open(paths[1]) as handle:
            found = explain(json.load(handle), spec)
        print(found.verdict())
        for title, side in (
            ("traced only", found.traced_only),
            ("modelled only", found.modelled_only),
        ):
            for held in side[:12]:
                print(f"  {title}: {held.requested} B (chunk {held.chunk}) {held.source}")
        return 0
    traces = []
    for path in paths:
        with open(path) as handle:
            traces.append(json.load(handle)["events"])
    if command == "replay":
        print(json.dumps(replay(traces[0]).__dict__))
        return 0
    if command == "diff":
        print(json.dumps({"first_divergence": first_divergence(*traces)}))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
