"""One profile job: the estimate and the measured peak of one spec, as a pair.

Shared by `phymem profile` (local, no Ray) and the worker (inside a Ray task), so both
report the same fields. Neither Ray nor TensorFlow is imported here: the measurement runs
in a fresh `python -m profilers.allocator` process.
"""

from __future__ import annotations

import platform
from dataclasses import asdict
from typing import Any

from estimator.spec import AnySpec
from estimator.units import reported_error_pct

DEFAULT_STEPS = 3
DEFAULT_TIMEOUT_S = 1800.0
STATUS_TO_JOB = {"ok": "succeeded", "oom": "oom", "failed": "failed"}


def framework_available() -> bool:
    """Whether the engine has a framework (allocator-accurate) mode on this installation."""
    try:
        from estimator.framework import FrameworkCostModel  # noqa: F401
    except ImportError:
        return False
    return True


def default_mode() -> str:
    return "framework" if framework_available() else "paper"


def estimate_dict(spec: AnySpec, mode: str | None = None) -> dict[str, Any]:
    """The engine's estimate in `mode` (default: framework when available, else paper)."""
    from estimator.engine import estimate

    chosen = mode or default_mode()
    try:
        return estimate(spec, chosen).to_dict()  # type: ignore[arg-type]
    except (ImportError, NotImplementedError):
        if chosen == "paper":
            raise
        return estimate(spec, "paper").to_dict()


def measure(
    spec: AnySpec,
    *,
    steps: int = DEFAULT_STEPS,
    device: str = "CPU:0",
    memory_limit_bytes: int | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """The profiler's measurement (a fresh process) as a dict; never raises for the spec."""
    from profilers.allocator import measure_in_subprocess

    measured = measure_in_subprocess(
        spec,
        steps=steps,
        device=device,
        memory_limit_bytes=memory_limit_bytes,
        timeout_s=timeout_s,
    )
    return asdict(measured)


def framework_versions(
    measurement: dict[str, Any], ray_version: str | None = None
) -> dict[str, Any]:
    from estimator.engine import ENGINE_VERSION

    versions: dict[str, Any] = {
        "tensorflow": measurement.get("tf_version"),
        "python": platform.python_version(),
        "phymem_engine": ENGINE_VERSION,
    }
    if ray_version:
        versions["ray"] = ray_version
    return versions


def pair(
    estimate: dict[str, Any],
    measurement: dict[str, Any],
    *,
    device_class: str,
    ray_version: str | None = None,
) -> dict[str, Any]:
    """The estimated-vs-measured summary (the job's result and `phymem profile --json`)."""
    estimate_bytes = int(estimate["total_bytes"])
    measured = measurement.get("peak_bytes")
    status = measurement.get("status") or "failed"
    return {
        "status": status,
        "device": device_class,
        "tf_device": measurement.get("device"),
        "estimate_bytes": estimate_bytes,
        "estimate_mode": estimate["mode"],
        "measured_bytes": measured,
        "error_pct": reported_error_pct(estimate_bytes, measured) if status == "ok" else None,
        "step_time_s": measurement.get("step_time_s"),
        "resident_bytes": measurement.get("resident_bytes"),
        "step_peaks": measurement.get("step_peaks") or [],
        "device_total_bytes": measurement.get("device_total_bytes"),
        "framework_versions": framework_versions(measurement, ray_version),
        "host": measurement.get("host"),
        "error": measurement.get("error"),
    }
