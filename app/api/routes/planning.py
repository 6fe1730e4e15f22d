"""POST /v1/sweeps, POST /v1/gate, POST /v1/max-batch, GET /v1/devices[/{name}/calibration]."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

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


@router.post("/sweeps", response_model=SweepOut, summary="Estimate every cell of a grid")
def create_sweep(
    grid: Annotated[SweepRequest, Body(openapi_examples=_SWEEP_EXAMPLES)], settings: SettingsDep
) -> Any:
    """Totals for every combination of the listed values (at most max_sweep_cells in paper
    mode, max_framework_sweep_cells in framework mode)."""
    limit = settings.max_sweep_cells
    if grid.mode == "framework":
        limit = settings.max_framework_sweep_cells
    return planning.run_sweep(grid, limit)


@router.post("/gate", response_model=GateOut, summary="Does each spec fit a device?")
def create_gate(
    request: Annotated[GateRequest, Body(openapi_examples=_GATE_EXAMPLES)], session: SessionDep
) -> Any:
    specs = [(item.name, pure(item.spec)) for item in request.specs]
    return planning.gate(session, specs, request.device, request.vram, request.mode, request.basis)


@router.post("/max-batch", response_model=MaxBatchOut, summary="The largest batch that fits")
def create_max_batch(
    request: Annotated[MaxBatchRequest, Body(openapi_examples=_MAX_BATCH_EXAMPLES)],
    session: SessionDep,
) -> Any:
    return planning.largest_batch(
        session, request.spec, request.device, request.vram, request.mode, request.basis
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
