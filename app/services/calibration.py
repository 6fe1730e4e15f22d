"""Per-device calibration from the stored estimated-vs-measured pairs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.errors import ProblemError
from app.db.models import Device
from app.db.models import Estimate as EstimateRow
from app.db.models import Measurement as MeasurementRow
from estimator.calibration import Calibration, Pair, fit
from estimator.engine import Mode


def pairs_for(session: Session, device: str, mode: Mode) -> list[Pair]:
    """Successful measurements on `device` beside their `mode` estimates."""
    query = (
        select(EstimateRow.total_bytes, MeasurementRow.measured_peak_bytes)
        .join(EstimateRow, MeasurementRow.estimate_id == EstimateRow.id)
        .where(
            MeasurementRow.device == device,
            MeasurementRow.status == "ok",
            MeasurementRow.measured_peak_bytes.is_not(None),
            EstimateRow.mode == mode,
        )
    )
    return [Pair(int(estimate), int(measured)) for estimate, measured in session.execute(query)]


def calibration(session: Session, device: str, mode: Mode) -> Calibration:
    """The device's calibration for estimates of `mode` (404 for an unknown device)."""
    known = device == "cpu" or session.get(Device, device) is not None
    if not known:
        raise ProblemError(404, f"unknown device {device!r}; see GET /v1/devices")
    return fit(device, mode, pairs_for(session, device, mode))
