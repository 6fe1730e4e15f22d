"""Aggregates behind the dashboard's charts: GET /v1/overview, GET /v1/measurements/summary,
POST /v1/batch-curve, POST /v1/specs/parse, GET /v1/table2.

They are ordinary JSON endpoints (the pages fetch them as any client would), so what a
page draws is what the API answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import ReleasingRoute, SessionDep
from app.api.schemas import BatchCurveRequest, SpecText, pure
from app.core.statuses import MeasurementQuantity
from app.services import dashboard
from estimator.engine import DEFAULT_MODE, Mode
from estimator.spec import PRINTABLE, FamilyName

router = APIRouter(prefix="/v1", tags=["dashboard"], route_class=ReleasingRoute)


@router.get("/overview", summary="Counts, latest jobs and the worker's presence")
def read_overview(session: SessionDep) -> Any:
    """Specs, estimates, measurements by device, jobs by status, the ten latest jobs, and
    whether a worker holds a live lease (the jobs table is the only record of workers)."""
    return dashboard.overview(session)


@router.get("/measurements/summary", summary="Error statistics of estimated-vs-measured pairs")
def read_measurement_summary(
    session: SessionDep,
    device: Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)] = None,
    family: Annotated[FamilyName | None, Query()] = None,
    mode: Annotated[Mode | None, Query()] = None,
    quantity: Annotated[MeasurementQuantity, Query()] = "training_peak",
) -> Any:
    """Count by status, median and max |error| in percent, a 5-point error histogram, the
    pair counts of every device, and the device's calibration for `mode` (fitted on
    training peaks only), for the pairs of one `quantity` (default training_peak)."""
    summary = dashboard.measurement_summary(
        session, device=device, family=family, mode=mode, quantity=quantity
    )
    summary["devices"] = dashboard.measurements_by_device(session)
    summary["default_device"] = dashboard.default_device(summary["devices"])
    summary["calibration"] = None
    if device is not None:
        # Without a mode filter: the mode most of the device's pairs were estimated in.
        fit_mode = mode or dashboard.majority_mode(session, device) or DEFAULT_MODE
        summary["calibration"] = dashboard.fitted_calibration(session, device, fit_mode)  # type: ignore[arg-type]
    return summary


@router.post("/batch-curve", summary="A spec's total at several batch sizes")
def create_batch_curve(request: BatchCurveRequest) -> Any:
    return dashboard.batch_curve(pure(request.spec), request.mode, request.batches)


@router.post("/specs/parse", summary="A pasted YAML or JSON spec as JSON")
def parse_spec(request: SpecText) -> Any:
    """Only reads the text; POST the result to /v1/estimates to validate and estimate it."""
    return {"spec": dashboard.parse_spec_text(request.text)}


@router.get("/table2", summary="The paper's Table 2: printed vs computed, cell by cell")
def read_table2() -> Any:
    return {"cells": dashboard.table2()}
