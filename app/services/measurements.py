"""Measurements: a job's measured peak, stored next to the estimate it pairs with, and
the estimated-vs-measured pairs read back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Estimate as EstimateRow
from app.db.models import Measurement as MeasurementRow
from app.db.models import Spec as SpecRow
from app.db.models import utcnow
from app.services.filters import where_given, where_spec
from estimator.units import reported_error_pct


def store(session: Session, job_id: int, measurement: dict[str, Any]) -> int:
    """Add a job's measurement row (inside the caller's write transaction); returns its id."""
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
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row.id


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
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    query = (
        select(MeasurementRow, EstimateRow, SpecRow)
        .join(EstimateRow, MeasurementRow.estimate_id == EstimateRow.id)
        .join(SpecRow, EstimateRow.spec_id == SpecRow.id)
    )
    query = where_spec(query, family=family, k=k, nt=nt)
    query = where_given(
        query,
        (MeasurementRow.status, status),
        (MeasurementRow.device, device),
        (MeasurementRow.job_id, job_id),
        (EstimateRow.mode, mode),
    )
    query = query.order_by(MeasurementRow.id).limit(limit).offset(offset)
    items = []
    for measured, estimate, spec in session.execute(query):
        estimate_bytes = int(estimate.total_bytes)
        measured_bytes = (
            None if measured.measured_peak_bytes is None else int(measured.measured_peak_bytes)
        )
        items.append(
            {
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
                "error_pct": reported_error_pct(estimate_bytes, measured_bytes),
                "step_time_s": measured.step_time_s,
                "nvml_peak_bytes": measured.nvml_peak_bytes,
                "framework_versions": measured.framework_versions,
                "created_at": measured.created_at,
            }
        )
    return items
