"""One profile job: the estimate and the measured peak of one spec, as a pair.

Shared by `phymem profile` (local, no Ray) and the worker (inside a Ray task), so both
report the same fields. Neither Ray nor TensorFlow is imported here: the measurement runs
in a fresh `python -m profilers.allocator` process.
"""

from __future__ import annotations

import platform
import statistics
from dataclasses import asdict
from typing import Any

from estimator.spec import AnySpec
from estimator.units import reported_error_pct

DEFAULT_STEPS = 3
DEFAULT_RUNS = 3  # fresh processes: one config lands on a few allocator layouts
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


def traced_tensorflow(basis: str) -> str | None:
    """The TensorFlow version a basis like 'tensorflow-2.21-cpu-bfc' was traced on."""
    parts = basis.split("-")
    return parts[1] if len(parts) > 2 and parts[0] == "tensorflow" else None


def tensorflow_warning(basis: str) -> str | None:
    """A warning when the installed TensorFlow is not the one the model was traced on.

    Reads the installed version from package metadata: TensorFlow is not imported here.
    """
    from importlib.metadata import PackageNotFoundError, version

    traced = traced_tensorflow(basis)
    if traced is None:
        return None
    installed = None
    for distribution in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu"):
        try:
            installed = version(distribution)
            break
        except PackageNotFoundError:
            continue
    if installed is None:
        return None  # the measuring process says so itself
    if installed == traced or installed.startswith(traced + "."):
        return None
    return (
        f"TensorFlow {installed} is installed, but the framework mode was traced on "
        f"TensorFlow {traced} ({basis}): its allocations may differ from this version's"
    )


def measure(
    spec: AnySpec,
    *,
    steps: int = DEFAULT_STEPS,
    device: str = "CPU:0",
    memory_limit_bytes: int | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    time_budget_s: float | None = None,
) -> dict[str, Any]:
    """The profiler's measurement (a fresh process) as a dict; never raises for the spec."""
    from profilers.allocator import measure_in_subprocess

    measured = measure_in_subprocess(
        spec,
        steps=steps,
        device=device,
        memory_limit_bytes=memory_limit_bytes,
        timeout_s=timeout_s,
        time_budget_s=time_budget_s,
    )
    return asdict(measured)


def measure_runs(spec: AnySpec, runs: int, **options: Any) -> list[dict[str, Any]]:
    """`runs` measurements, each in its own fresh process; a refused profile runs once."""
    results: list[dict[str, Any]] = []
    for _ in range(runs):
        results.append(measure(spec, **options))
        if str(results[-1].get("error") or "").startswith("profile refused"):
            break
    return results


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
        "peak_bytes": estimate_bytes,
        "upper_bytes": int(estimate.get("upper_bytes", estimate_bytes)),
        "basis": estimate.get("basis"),
        "measured_bytes": measured,
        "error_pct": reported_error_pct(estimate_bytes, measured) if status == "ok" else None,
        "step_time_s": measurement.get("step_time_s"),
        "resident_bytes": measurement.get("resident_bytes"),
        "step_peaks": measurement.get("step_peaks") or [],
        "executor": measurement.get("executor"),
        "device_total_bytes": measurement.get("device_total_bytes"),
        "framework_versions": framework_versions(measurement, ray_version),
        "host": measurement.get("host"),
        "error": measurement.get("error"),
    }


def combine(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several fresh-process runs of the same spec (each a `pair`).

    `measured_bytes` is the median run (median_low: a run's own value), with the min, the
    max, whether every run stayed within the estimate's upper_bytes, and every run beside
    it; the status is "ok" only when every run was.
    """
    ok = [p for p in pairs if p.get("status") == "ok" and p.get("measured_bytes")]
    peaks = sorted(int(p["measured_bytes"]) for p in ok)
    if peaks:
        median = statistics.median_low(peaks)
        result = dict(next(p for p in ok if int(p["measured_bytes"]) == median))
    else:
        result = dict(pairs[0])
    failed = [p for p in pairs if p.get("status") != "ok"]
    if failed:
        result["status"] = failed[0].get("status") or "failed"
        result["error"] = failed[0].get("error")
        result["error_pct"] = None
    upper = result.get("upper_bytes")
    result["measured_min_bytes"] = peaks[0] if peaks else None
    result["measured_max_bytes"] = peaks[-1] if peaks else None
    result["within_upper"] = all(p <= upper for p in peaks) if peaks and upper else None
    result["runs"] = [
        {
            key: p.get(key)
            for key in (
                "status",
                "measured_bytes",
                "error_pct",
                "step_time_s",
                "step_peaks",
                "executor",
                "job_id",
                "error",
            )
            if key in p
        }
        for p in pairs
    ]
    return result
