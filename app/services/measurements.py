"""Measurements: a job's measured peak, stored next to the estimate it pairs with, and
the estimated-vs-measured pairs read back.

Each measurement has a quantity (app/core/statuses.py): 'training_peak' pairs the
allocator's peak (`measured_peak_bytes`) with the estimate row's total; 'model_size'
pairs a TFLite file's bytes with the stored-size estimate of its recipe
(`estimated_value`); 'latency' is measured only (microseconds, no estimate exists).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Estimate as EstimateRow
from app.db.models import Measurement as MeasurementRow
from app.db.models import Spec as SpecRow
from app.db.models import utcnow
from app.services import estimates
from estimator.units import reported_error_pct

UNITS = {"training_peak": "bytes", "model_size": "bytes", "latency": "us"}


def store(session: Session, job_id: int, measurement: dict[str, Any]) -> int:
    """Add a job's training-peak measurement (inside the caller's write transaction);
    returns its id."""
    row = MeasurementRow(
        estimate_id=measurement["estimate_id"],
        job_id=job_id,
        device=measurement["device"][:128],
        framework_versions=measurement.get("framework_versions") or {},
        measured_peak_bytes=None
        if measurement.get("measured_bytes") is None
        else str(int(measurement["measured_bytes"])),
        nvml_peak_bytes=measurement.get("nvml_peak_bytes"),
        step_time_s=measurement.get("step_time_s"),
        status=measurement["status"],
        quantity="training_peak",
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row.id


def store_quantities(
    session: Session,
    estimate_id: int,
    rows: Iterable[dict[str, Any]],
    *,
    device: str,
    framework_versions: dict[str, Any],
    job_id: int | None = None,
) -> list[int]:
    """Add model-size and latency measurements of one estimate's spec (each row: quantity,
    measured_value, estimated_value or None, detail) inside the caller's transaction."""
    added = [
        MeasurementRow(
            estimate_id=estimate_id,
            job_id=job_id,
            device=device[:128],
            framework_versions=framework_versions,
            status="ok",
            quantity=row["quantity"],
            measured_value=str(row["measured_value"]),
            estimated_value=None
            if row.get("estimated_value") is None
            else str(row["estimated_value"]),
            detail=row.get("detail") or {},
            created_at=utcnow(),
        )
        for row in rows
    ]
    session.add_all(added)
    session.flush()
    return [row.id for row in added]


def _number(text: str | None) -> int | float | None:
    """An exact decimal as stored: an int for whole numbers (bytes), else a float (us)."""
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _values(measured: MeasurementRow, estimate_bytes: int) -> dict[str, Any]:
    """The pair's estimated and measured values in the quantity's unit, and its error."""
    if measured.quantity == "training_peak":
        peak = _number(measured.measured_peak_bytes)
        estimated: int | float | None = estimate_bytes
        value = peak
    else:
        estimated, value = _number(measured.estimated_value), _number(measured.measured_value)
    error = None
    if isinstance(estimated, int) and isinstance(value, int):
        error = reported_error_pct(estimated, value)
    return {
        "quantity": measured.quantity,
        "unit": UNITS[measured.quantity],
        "estimated_value": estimated,
        "measured_value": value,
        "error_pct": error,
        "detail": measured.detail or {},
    }


def list_measurements(
    session: Session,
    *,
    family: str | None = None,
    k: int | None = None,
    nt: int | None = None,
    status: str | None = None,
    device: str | None = None,
    job_id: int | None = None,
    mode: str | None = None,
    quantity: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    query = (
        select(MeasurementRow, EstimateRow, SpecRow)
        .join(EstimateRow, MeasurementRow.estimate_id == EstimateRow.id)
        .join(SpecRow, EstimateRow.spec_id == SpecRow.id)
    )
    query = estimates.where_spec(query, family=family, k=k, nt=nt)
    for column, wanted in (
        (MeasurementRow.status, status),
        (MeasurementRow.device, device),
        (MeasurementRow.job_id, job_id),
        (EstimateRow.mode, mode),
        (MeasurementRow.quantity, quantity),
    ):
        if wanted is not None:
            query = query.where(column == wanted)
    query = query.order_by(MeasurementRow.id).limit(limit).offset(offset)
    return [_item(*row) for row in session.execute(query)]


def _item(measured: MeasurementRow, estimate: EstimateRow, spec: SpecRow) -> dict[str, Any]:
    estimate_bytes = int(estimate.total_bytes)
    measured_bytes = (
        None if measured.measured_peak_bytes is None else int(measured.measured_peak_bytes)
    )
    return {
        "id": measured.id,
        "job_id": measured.job_id,
        "estimate_id": estimate.id,
        "spec_hash": spec.spec_hash,
        "kind": spec.kind,
        "family": spec.family,
        "k": spec.k,
        "nt": spec.nt,
        "batch": estimate.result.get("batch"),
        "mode": estimate.mode,
        "engine_version": estimate.engine_version,
        "status": measured.status,
        "device": measured.device,
        "estimate_bytes": estimate_bytes,
        "breakdown": estimate.breakdown,
        "measured_bytes": measured_bytes,
        "step_time_s": measured.step_time_s,
        "nvml_peak_bytes": measured.nvml_peak_bytes,
        "framework_versions": measured.framework_versions,
        "created_at": measured.created_at,
        **_values(measured, estimate_bytes),
    }
