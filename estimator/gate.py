"""The CI gate: does each spec fit a device's memory? Verdicts as text, JSON or JUnit XML.

A fit is judged on a *basis*: "upper" (the default) compares the estimate's `upper_bytes`,
a bound no execution order of the step exceeds, so "fits" is never said of a config that
can fail; "expected" compares `peak_bytes` (`total_bytes`), the layout most processes take.

Named devices follow one rule on every surface (the CLI gate and max-batch, POST /v1/gate,
POST /v1/max-batch): the device's memory, and the requirement raised by the device's
*prior* calibration (`estimator.calibration.prior`: the context a device is known to add
before anything was measured on it). Calibrations fitted from stored measurements are
reported by GET /v1/devices/{name}/calibration and applied to POST /v1/estimates, never to
a fit verdict, so a verdict is the same with or without a database, and a max batch from
one surface always passes the gate of the others.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from estimator.engine import DEFAULT_MODE, Mode, Plan, cached_plan
from estimator.units import format_gib

if TYPE_CHECKING:
    from estimator.calibration import Calibration
    from estimator.spec import FamilySpec, ModelSpec


Basis = Literal["upper", "expected"]
BASES: tuple[Basis, ...] = ("upper", "expected")
DEFAULT_BASIS: Basis = "upper"


def parse_basis(value: str) -> Basis:
    if value not in BASES:
        raise ValueError(f"basis: must be 'upper' or 'expected', not {value!r}")
    return value


def device_calibration(device: str | None, mode: Mode) -> Calibration | None:
    """The one rule of every fit verdict (the module's docstring): a named device's prior
    calibration, nothing for a bare memory size."""
    if device is None:
        return None
    from estimator.calibration import prior

    return prior(device.strip().lower(), mode)


def basis_bytes(plan: Plan, batch: int, basis: Basis) -> int:
    """What a fit is judged on: the bound over execution orders, or the expected peak."""
    return plan.upper_bytes(batch) if basis == "upper" else plan.total_bytes(batch)


def required_bytes(
    plan: Plan, batch: int, basis: Basis, calibration: Calibration | None = None
) -> int:
    """The bytes a device must have for `batch`: the basis, raised by the calibration."""
    needed = basis_bytes(plan, batch, basis)
    if calibration is not None and calibration.source != "none":
        needed = calibration.apply(needed)
    return needed


@dataclass(frozen=True)
class Verdict:
    name: str
    fits: bool
    total_bytes: int  # what was judged: the basis's bytes, calibration applied
    vram_bytes: int
    mode: str
    calibration: str = "none"  # how the device's calibration changed the estimate
    basis: str = DEFAULT_BASIS
    peak_bytes: int = 0  # the estimate's expected peak (uncalibrated)
    upper_bytes: int = 0  # the estimate's bound over execution orders (uncalibrated)

    @property
    def reason(self) -> str:
        need, have = format_gib(self.total_bytes), format_gib(self.vram_bytes)
        judged = "upper bound" if self.basis == "upper" else "expected peak"
        if self.fits:
            return f"fits: needs {need} GiB ({judged}) of {have} GiB"
        return f"exceeds: needs {need} GiB ({judged}), device has {have} GiB"


def check(
    name: str,
    spec: FamilySpec | ModelSpec,
    vram_bytes: int,
    mode: Mode = DEFAULT_MODE,
    calibration: Calibration | None = None,
    basis: Basis = DEFAULT_BASIS,
) -> Verdict:
    """Does the spec fit? The basis's bytes (with the calibration applied) are judged."""
    plan = cached_plan(spec, mode)
    needed = required_bytes(plan, spec.batch, basis, calibration)
    applied = "none"
    if calibration is not None and calibration.source != "none":
        applied = f"{calibration.source} ({calibration.pairs} pairs)"
    return Verdict(
        name,
        needed <= vram_bytes,
        needed,
        vram_bytes,
        mode,
        applied,
        basis,
        plan.total_bytes(spec.batch),
        plan.upper_bytes(spec.batch),
    )


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
            failure.text = (
                f"total_bytes={verdict.total_bytes} vram_bytes={verdict.vram_bytes} "
                f"basis={verdict.basis}"
            )
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)
