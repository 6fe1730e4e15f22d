"""GET /v1/measurements: measured quantities next to the estimates they pair with."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from app.api.deps import ReleasingRoute, SessionDep
from app.api.schemas import MAX_ID, MeasurementList
from app.core.statuses import MeasurementQuantity
from app.services import measurements
from estimator.engine import Mode
from estimator.spec import MAX_MESSAGE_BITS, PRINTABLE, FamilyName

router = APIRouter(prefix="/v1/measurements", tags=["measurements"], route_class=ReleasingRoute)


@router.get("", response_model=MeasurementList, summary="Estimated-vs-measured pairs")
def list_measurements(
    session: SessionDep,
    family: Annotated[FamilyName | None, Query()] = None,
    k: Annotated[int | None, Query(ge=1, le=MAX_MESSAGE_BITS)] = None,
    nt: Annotated[int | None, Query(ge=1, le=MAX_MESSAGE_BITS)] = None,
    status: Annotated[Literal["ok", "oom", "failed"] | None, Query()] = None,
    device: Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)] = None,
    job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    mode: Annotated[Mode | None, Query()] = None,
    quantity: Annotated[MeasurementQuantity | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Any:
    """Measurements oldest first, of every quantity unless `quantity` narrows them;
    `error_pct` = (estimated - measured) / measured x 100 in the quantity's unit."""
    items = measurements.list_measurements(
        session,
        family=family,
        k=k,
        nt=nt,
        status=status,
        device=device,
        job_id=job_id,
        mode=mode,
        quantity=quantity,
        limit=limit,
        offset=offset,
    )
    return {"items": items, "limit": limit, "offset": offset}
