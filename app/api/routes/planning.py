"""POST /v1/sweeps, POST /v1/gate, POST /v1/max-batch, GET /v1/devices[/{name}/calibration]."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.responses import StreamingResponse

from app.api.deps import ReleasingRoute, SessionDep, SettingsDep
from app.api.schemas import (
    CalibrationOut,
    DeviceOut,
    GateOut,
    GateRequest,
    MaxBatchOut,
    MaxBatchRequest,
    Problem,
    SweepOut,
    SweepRequest,
    pure,
)
from app.services import calibration, planning
from app.services.streaming import NDJSON, too_large_to_buffer, wants_stream
from estimator.engine import DEFAULT_MODE, Mode
from estimator.spec import PRINTABLE

router = APIRouter(prefix="/v1", tags=["planning"], route_class=ReleasingRoute)

_SWEEP_EXAMPLES = {
    "table2": {
        "summary": "Table 2's AE and BAE columns",
        "value": {"family": ["ae", "bae"], "k": [2, 4, 6], "nt": [2, 4], "batch": [2048]},
    }
}
_GATE_EXAMPLES = {
    "device": {
        "summary": "Two specs on an A100 80GB",
        "value": {
            "device": "a100-80gb",
            "specs": [
                {"name": "ae-k6-nt4", "spec": {"family": "ae", "k": 6, "nt": 4}},
                {"name": "bae-k8-nt64", "spec": {"family": "bae", "k": 8, "nt": 64}},
            ],
        },
    },
    "vram": {
        "summary": "A memory size instead of a device",
        "value": {"vram": "24GiB", "specs": [{"spec": {"family": "ae", "k": 4, "nt": 2}}]},
    },
}
_MAX_BATCH_EXAMPLES = {
    "device": {
        "summary": "BAE k=8, N_T=16 on an H100",
        "value": {"device": "h100-80gb", "spec": {"family": "bae", "k": 8, "nt": 16}},
    }
}


_STREAMS: dict[int | str, dict[str, Any]] = {
    200: {"content": {NDJSON: {}}, "description": "JSON, or NDJSON when asked."}
}
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]


@router.post(
    "/sweeps", response_model=SweepOut, responses=_STREAMS, summary="Estimate every cell of a grid"
)
def create_sweep(
    grid: Annotated[SweepRequest, Body(openapi_examples=_SWEEP_EXAMPLES)],
    settings: SettingsDep,
    accept: AcceptHeader = None,
) -> Any:
    """Totals for every combination of the listed values (at most max_sweep_cells in paper
    mode, max_framework_sweep_cells in framework mode). With `Accept: application/x-ndjson`
    one line per cell, then a summary line; a framework sweep of more than
    max_buffered_items cells must ask for that stream."""
    limit = settings.max_sweep_cells
    if grid.mode == "framework":
        limit = settings.max_framework_sweep_cells
    if wants_stream(accept):
        return StreamingResponse(planning.stream_sweep(grid, limit), media_type=NDJSON)
    planning.check_grid(grid, limit)
    if grid.mode == "framework" and grid.size > settings.max_buffered_items:
        raise too_large_to_buffer("", grid.size, "cells", settings.max_buffered_items)
    return planning.run_sweep(grid, limit)


@router.post(
    "/gate", response_model=GateOut, responses=_STREAMS, summary="Does each spec fit a device?"
)
def create_gate(
    request: Annotated[GateRequest, Body(openapi_examples=_GATE_EXAMPLES)],
    session: SessionDep,
    settings: SettingsDep,
    accept: AcceptHeader = None,
) -> Any:
    """A verdict per spec. With `Accept: application/x-ndjson` one line per spec, then a
    summary line; a framework gate of more than max_buffered_items specs must ask for it."""
    specs = [(item.name, pure(item.spec)) for item in request.specs]
    target = (request.device, request.vram, request.mode, request.basis)
    if wants_stream(accept):
        return StreamingResponse(planning.stream_gate(session, specs, *target), media_type=NDJSON)
    if request.mode == "framework" and len(specs) > settings.max_buffered_items:
        raise too_large_to_buffer("specs", len(specs), "specs", settings.max_buffered_items)
    return planning.gate(session, specs, *target)


@router.post("/max-batch", response_model=MaxBatchOut, summary="The largest batch that fits")
def create_max_batch(
    request: Annotated[MaxBatchRequest, Body(openapi_examples=_MAX_BATCH_EXAMPLES)],
    session: SessionDep,
) -> Any:
    return planning.largest_batch(
        session, pure(request.spec), request.device, request.vram, request.mode, request.basis
    )


@router.get("/devices", response_model=list[DeviceOut], summary="The GPU catalog")
def read_devices(session: SessionDep) -> Any:
    return planning.list_devices(session)


@router.get(
    "/devices/{name}/calibration",
    response_model=CalibrationOut,
    responses={404: {"model": Problem, "description": "No such device."}},
    summary="What a device adds to an estimate, fitted from stored measurements",
)
def read_calibration(
    name: Annotated[str, Path(max_length=64, pattern=PRINTABLE)],
    session: SessionDep,
    mode: Annotated[Mode, Query()] = DEFAULT_MODE,
) -> Any:
    """Offset (and scale, when the pairs ask for one) fitted from the device's measurements.

    `pairs` says how many measurements back it; with none, the paper's A100 observation
    (about 0.7 GB above the paper-mode estimate) stands in as a prior for the A100s.
    """
    return calibration.calibration(session, name, mode)
