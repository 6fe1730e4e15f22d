"""Aggregates the dashboard's pages need: counts, worker presence, error statistics.

Each is one grouped query (no row is loaded per pair), so a page stays fast however many
measurements are stored; the same functions back the JSON endpoints and the pages.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from statistics import median
from typing import Any

from sqlalchemy import Float, cast, func, select
from sqlalchemy.orm import Session

from app.api.schemas import MAX_CURVE_POINTS
from app.core.statuses import JOB_STATUSES
from app.db.models import Estimate as EstimateRow
from app.db.models import Job, utcnow
from app.db.models import Measurement as MeasurementRow
from app.db.models import Spec as SpecRow
from app.services import calibration, jobs
from app.services.estimates import engine_call, totals, where_spec
from estimator.engine import ENGINE_VERSION, Mode, cached_plan
from estimator.errors import InvalidInput as invalid
from estimator.errors import NotFound
from estimator.spec import AnySpec
from estimator.units import error_pct

LATEST_JOBS = 10
# The device the dashboard opens on when it has pairs (the paper's measured GPU).
PREFERRED_DEVICE = "a100-80gb"


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def measurements_by_device(session: Session) -> dict[str, int]:
    """Measurement counts per device, largest first."""
    rows = session.execute(
        select(MeasurementRow.device, func.count())
        .group_by(MeasurementRow.device)
        .order_by(func.count().desc(), MeasurementRow.device)
    )
    return {device: int(count) for device, count in rows}


def default_device(by_device: dict[str, int]) -> str | None:
    """The device a page opens on: a100-80gb when it has pairs, else the one with most."""
    if by_device.get(PREFERRED_DEVICE):
        return PREFERRED_DEVICE
    return next(iter(by_device), None)


def worker_presence(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Whether a dispatcher is alive, read from the jobs' leases (workers keep no heartbeat).

    A worker renews the lease of each job it runs, so an unexpired lease means a live
    worker; `last_claim_at` is the latest time a job was first claimed. An idle worker
    holds no lease, so `alive` is False between jobs: the page says so.
    """
    now = now or utcnow()
    owners: list[str] = sorted(
        owner
        for owner in session.scalars(
            select(Job.lease_owner)
            .where(
                Job.status == "running",
                Job.lease_owner.is_not(None),
                Job.lease_expires_at > now,
            )
            .distinct()
        )
        if owner is not None
    )
    last_claim = session.scalar(select(func.max(Job.started_at)))
    return {
        "alive": bool(owners),
        "lease_owners": owners,
        "last_claim_at": last_claim,
        "basis": "job leases",
    }


def overview(session: Session) -> dict[str, Any]:
    by_status: dict[str, int] = dict.fromkeys(JOB_STATUSES, 0)
    job_counts = []
    grouped = session.execute(
        select(Job.kind, Job.status, func.count())
        .group_by(Job.kind, Job.status)
        .order_by(Job.kind, Job.status)
    )
    for kind, status, count in grouped:
        by_status[status] += int(count)
        job_counts.append({"kind": kind, "status": status, "count": int(count)})
    latest = session.scalars(select(Job).order_by(Job.id.desc()).limit(LATEST_JOBS))
    by_device = measurements_by_device(session)
    return {
        "engine_version": ENGINE_VERSION,
        "specs": _count(session, SpecRow),
        "estimates": _count(session, EstimateRow),
        "measurements": sum(by_device.values()),
        "measurements_by_device": by_device,
        "default_device": default_device(by_device),
        "jobs": sum(by_status.values()),
        "jobs_by_status": by_status,
        "job_counts": job_counts,
        "latest_jobs": [jobs.view(session, job) for job in latest],
        "worker": worker_presence(session),
    }


# Decimal digits a double holds to within its range (1.8e308).
_DOUBLE_DIGITS = 300


def measurement_summary(
    session: Session,
    *,
    device: str | None,
    family: str | None = None,
    mode: str | None = None,
    quantity: str = "training_peak",
) -> dict[str, Any]:
    """Pair counts by status, |error| median and max, for one filter of the pairs of one
    quantity (a model size compares `estimated_value` with `measured_value`).

    Counts are grouped in SQL. The error of each successful pair is computed in SQL too,
    in doubles (exact for byte counts below 2^53, i.e. any memory that was measured);
    the rare pair whose stored decimal is too long for a double is computed exactly here.
    """

    def narrowed(query: Any) -> Any:
        query = query.join(EstimateRow, MeasurementRow.estimate_id == EstimateRow.id)
        query = query.where(MeasurementRow.quantity == quantity)
        if family is not None:
            query = query.join(SpecRow, EstimateRow.spec_id == SpecRow.id)
            query = where_spec(query, family=family, k=None, nt=None)
        if device is not None:
            query = query.where(MeasurementRow.device == device)
        if mode is not None:
            query = query.where(EstimateRow.mode == mode)
        return query

    by_status = {"ok": 0, "oom": 0, "failed": 0}
    counts = narrowed(select(MeasurementRow.status, func.count()))
    for status, count in session.execute(counts.group_by(MeasurementRow.status)):
        by_status[status] = int(count)

    estimate_text: Any = EstimateRow.total_bytes
    measured_text: Any = MeasurementRow.measured_peak_bytes
    if quantity != "training_peak":
        estimate_text, measured_text = MeasurementRow.estimated_value, MeasurementRow.measured_value
    measured_pairs = (
        (MeasurementRow.status == "ok")
        & estimate_text.is_not(None)
        & measured_text.is_not(None)
        & (measured_text != "0")
    )
    fits_double = (func.length(estimate_text) <= _DOUBLE_DIGITS) & (
        func.length(measured_text) <= _DOUBLE_DIGITS
    )
    estimate_value, measured_value = cast(estimate_text, Float), cast(measured_text, Float)
    in_sql = narrowed(
        select((estimate_value - measured_value) * 100.0 / measured_value).where(
            measured_pairs & fits_double
        )
    )
    errors = [float(error) for error in session.scalars(in_sql)]
    exact = narrowed(select(estimate_text, measured_text).where(measured_pairs & ~fits_double))
    errors += [error_pct(int(est), int(meas)) for est, meas in session.execute(exact)]
    absolute = [abs(error) for error in errors]
    histogram: dict[str, int] = {}
    for error in errors:
        low = int(error // 5) * 5  # 5-point bins of the signed error
        key = f"{low}..{low + 5}"
        histogram[key] = histogram.get(key, 0) + 1
    ordered = sorted(histogram.items(), key=lambda item: int(item[0].split("..")[0]))
    return {
        "device": device,
        "family": family,
        "mode": mode,
        "quantity": quantity,
        "count": sum(by_status.values()),
        "by_status": by_status,
        "errors": len(errors),
        "median_abs_error_pct": round(median(absolute), 3) if absolute else None,
        "max_abs_error_pct": round(max(absolute), 3) if absolute else None,
        "histogram": [{"bin_pct": key, "count": count} for key, count in ordered],
    }


def majority_mode(session: Session, device: str) -> str | None:
    """The estimate mode most of the device's pairs were estimated in."""
    found = session.execute(
        select(EstimateRow.mode, func.count())
        .join(MeasurementRow, MeasurementRow.estimate_id == EstimateRow.id)
        .where(MeasurementRow.device == device)
        .group_by(EstimateRow.mode)
        .order_by(func.count().desc(), EstimateRow.mode)
    ).first()
    return None if found is None else str(found[0])


def fitted_calibration(session: Session, device: str, mode: Mode) -> dict[str, Any] | None:
    """The device's calibration (None for a device outside the catalog, e.g. a CPU host)."""
    try:
        found = calibration.calibration(session, device, mode)
    except NotFound:  # not a catalog device: the page draws no fit line
        return None
    return {
        "device": found.device,
        "mode": found.mode,
        "offset_bytes": found.offset_bytes,
        "scale": found.scale,
        "pairs": found.pairs,
        "source": found.source,
    }


# Each framework-mode point replays the allocator (~5-25 ms): fewer of them per request.
MAX_FRAMEWORK_CURVE_POINTS = 32


# A framework-mode point replans the whole model: a request replans at most this many
# layer rows in all (a few seconds at most), so a deep model gets a thinner curve.
CURVE_BUDGET_ROWS = 1000


def _spread(count: int, keep: int) -> list[int]:
    """`keep` indices spread evenly over range(count), both ends included."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def batch_curve(spec: AnySpec, mode: Mode, batches: list[int]) -> dict[str, Any]:
    """Totals of one spec at several batch sizes (the spec's own plan, any spec kind).

    Batch-invariant modes (paper) share one plan; the framework mode plans each batch
    anew, so beyond CURVE_BUDGET_ROWS the batches are thinned evenly and the ones left
    out are listed under `skipped`.
    """
    limit = MAX_FRAMEWORK_CURVE_POINTS if mode == "framework" else MAX_CURVE_POINTS
    if len(batches) > limit:
        raise invalid("batches", f"at most {limit} batch sizes in {mode} mode")
    ordered = sorted(set(batches))

    def run() -> tuple[list[dict[str, Any]], list[int]]:
        last = ordered[-1]
        plan = cached_plan(spec.model_copy(update={"batch": last}), mode)
        keep = len(ordered)
        if not plan.batch_invariant:
            keep = max(1, CURVE_BUDGET_ROWS // max(1, len(plan.rows)))
        chosen = [ordered[i] for i in _spread(len(ordered), keep)]
        points = [{"batch": b, **totals(plan.total_bytes(b))} for b in chosen]
        return points, [b for b in ordered if b not in set(chosen)]

    points, skipped = engine_call(mode, run, field="spec")
    return {"mode": mode, "engine_version": ENGINE_VERSION, "points": points, "skipped": skipped}


def parse_spec_text(text: str) -> dict[str, Any]:
    """A pasted YAML or JSON spec as a JSON object (validation is the estimate's job)."""
    stripped = text.strip()
    if not stripped:
        raise invalid("text", "paste a spec: YAML or JSON with 'family' or 'layers'")
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(stripped)
        except ValueError as error:
            raise invalid("text", f"not valid JSON: {error}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(stripped)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or type(error).__name__
            raise invalid("text", f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise invalid("text", "a spec must be a mapping of fields (family: ..., or layers: ...)")
    return data


@lru_cache(maxsize=1)
def table2() -> list[dict[str, Any]]:
    """The paper's Table 2, cell by cell: printed beside the paper mode (computed once)."""
    from estimator.table2 import reproduce
    from estimator.units import format_gib, gib_value

    return [
        {
            "column": cell.column,
            "k": cell.k,
            "nt": cell.nt,
            "gib": gib_value(cell.total_bytes),
            "gib_text": format_gib(cell.total_bytes),
            "total_bytes": cell.total_bytes,
            "paper": cell.paper,
            "matches": cell.matches,
            "rounds_to_printed": cell.rounds_to_printed,
            "known_misprint": cell.known_misprint,
        }
        for cell in reproduce()
    ]
