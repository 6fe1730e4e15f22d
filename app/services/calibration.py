"""Per-device calibration from the stored estimated-vs-measured pairs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Device
from app.db.models import Estimate as EstimateRow
from app.db.models import Measurement as MeasurementRow
from estimator.calibration import CALIBRATED_QUANTITY, Calibration, Pair, fit
from estimator.engine import Mode
from estimator.errors import InvalidInput, NotFound


def pairs_for(session: Session, device: str, mode: Mode) -> list[Pair]:
    """Successful training-peak measurements on `device` beside their `mode` estimates
    (a model size or a latency says nothing of training memory)."""
    query = (
        select(EstimateRow.total_bytes, MeasurementRow.measured_peak_bytes, MeasurementRow.quantity)
        .join(EstimateRow, MeasurementRow.estimate_id == EstimateRow.id)
        .where(
            MeasurementRow.device == device,
            MeasurementRow.status == "ok",
            MeasurementRow.quantity == CALIBRATED_QUANTITY,
            MeasurementRow.measured_peak_bytes.is_not(None),
            EstimateRow.mode == mode,
        )
    )
    rows = session.execute(query)
    return [
        Pair(int(estimate), int(measured), quantity)
        for estimate, measured, quantity in rows
        if measured
    ]


def calibration(session: Session, device: str, mode: Mode, field: str | None = None) -> Calibration:
    """The device's calibration for estimates of `mode`.

    An unknown device is a 404, or a 422 naming `field` when it came in a request body.
    """
    known = device == "cpu" or session.get(Device, device) is not None
    if not known:
        message = f"unknown device {device!r}; see GET /v1/devices"
        raise NotFound(message) if field is None else InvalidInput(field, message)
    return fit(device, mode, pairs_for(session, device, mode))
