"""The CI gate: does each spec fit a device's memory? Verdicts as text, JSON or JUnit XML."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from estimator.engine import DEFAULT_MODE, Mode, cached_plan
from estimator.units import format_gib

if TYPE_CHECKING:
    from estimator.calibration import Calibration
    from estimator.spec import FamilySpec, ModelSpec


@dataclass(frozen=True)
class Verdict:
    name: str
    fits: bool
    total_bytes: int
    vram_bytes: int
    mode: str
    calibration: str = "none"  # how the device's calibration changed the estimate

    @property
    def reason(self) -> str:
        need, have = format_gib(self.total_bytes), format_gib(self.vram_bytes)
        if self.fits:
            return f"fits: needs {need} GiB of {have} GiB"
        return f"exceeds: needs {need} GiB, device has {have} GiB"


def check(
    name: str,
    spec: FamilySpec | ModelSpec,
    vram_bytes: int,
    mode: Mode = DEFAULT_MODE,
    calibration: Calibration | None = None,
) -> Verdict:
    """Does the spec fit? With a device's calibration, the calibrated total is judged."""
    total = cached_plan(spec, mode).total_bytes(spec.batch)
    applied = "none"
    if calibration is not None and calibration.source != "none":
        total = calibration.apply(total)
        applied = f"{calibration.source} ({calibration.pairs} pairs)"
    return Verdict(name, total <= vram_bytes, total, vram_bytes, mode, applied)


def render_text(verdicts: list[Verdict]) -> str:
    return "\n".join(f"{'PASS' if v.fits else 'FAIL'} {v.name}: {v.reason}" for v in verdicts)


def render_json(verdicts: list[Verdict]) -> str:
    rows = [asdict(v) | {"reason": v.reason} for v in verdicts]
    return json.dumps({"fits": all(v.fits for v in verdicts), "specs": rows}, indent=2)


def render_junit(verdicts: list[Verdict]) -> str:
    """One test case per spec, so CI systems list each config as a test."""
    from xml.etree import ElementTree

    failures = sum(not v.fits for v in verdicts)
    suite = ElementTree.Element(
        "testsuite",
        name="phymem-gate",
        tests=str(len(verdicts)),
        failures=str(failures),
        errors="0",
    )
    for verdict in verdicts:
        case = ElementTree.SubElement(suite, "testcase", classname="phymem.gate", name=verdict.name)
        if not verdict.fits:
            failure = ElementTree.SubElement(case, "failure", message=verdict.reason)
            failure.text = f"total_bytes={verdict.total_bytes} vram_bytes={verdict.vram_bytes}"
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)
