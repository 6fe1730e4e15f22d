"""POST /v1/estimates, GET /v1/estimates/{id}, GET /v1/estimates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from app.api.deps import MetricsDep, ReleasingRoute, SessionDep, StoreLimitDep
from app.api.schemas import (
    ESTIMATE_EXAMPLES,
    MAX_ID,
    EstimateList,
    EstimateOut,
    EstimateRequest,
)
from app.services import calibration, compression, estimates
from estimator.engine import Mode
from estimator.spec import MAX_MESSAGE_BITS, FamilyName

router = APIRouter(prefix="/v1/estimates", tags=["estimates"], route_class=ReleasingRoute)


@router.post("", response_model=EstimateOut, summary="Estimate a spec's training memory")
def create_estimate(
    request: Annotated[EstimateRequest, Body(openapi_examples=ESTIMATE_EXAMPLES)],
    session: SessionDep,
    metrics: MetricsDep,
    limit: StoreLimitDep,
) -> Any:
    """The per-layer table, the breakdown and the exact total of one spec under one mode.

    The spec is stored once (by the SHA-256 of its canonical JSON) and so is its estimate
    for each mode and engine version: asking again returns the stored one, with its id.
    Without X-API-Key, storage is bounded (PHYMEM_ANONYMOUS_MAX_SPECS stored specs, specs
    of at most PHYMEM_ANONYMOUS_MAX_SPEC_BYTES): past it the estimate comes with id null.
    With `device`, the answer also carries the total calibrated for that device.
    """
    stored = estimates.get_or_create(session, request.spec(), request.mode, limit)
    metrics.estimates.labels(request.mode, "computed" if stored.computed else "stored").inc()
    answer = stored.to_dict()
    answer |= compression.size_and_flops(answer)
    if request.device is not None:
        found = calibration.calibration(session, request.device, request.mode, field="device")
        answer["calibrated"] = {
            "calibration": found,
            **estimates.totals(found.apply(answer["total_bytes"])),
        }
    return answer


@router.get("/{estimate_id}", response_model=EstimateOut, summary="A stored estimate")
def read_estimate(estimate_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep) -> Any:
    answer = estimates.get(session, estimate_id).to_dict()
    return answer | compression.size_and_flops(answer)


@router.get("", response_model=EstimateList, summary="Search stored estimates")
def list_estimates(
    session: SessionDep,
    family: Annotated[FamilyName | None, Query()] = None,
    k: Annotated[int | None, Query(ge=1, le=MAX_MESSAGE_BITS)] = None,
    nt: Annotated[int | None, Query(ge=1, le=MAX_MESSAGE_BITS)] = None,
    mode: Annotated[Mode | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Any:
    """Stored estimates, oldest first, filtered by family, k, N_T and mode."""
    items = estimates.search(
        session, family=family, k=k, nt=nt, mode=mode, limit=limit, offset=offset
    )
    return {"items": items, "limit": limit, "offset": offset}
