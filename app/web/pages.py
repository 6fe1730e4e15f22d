"""The dashboard's HTML pages. Each renders from the same service functions as the JSON
endpoints (or is a shell whose script fetches them), so a page cannot disagree with the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.api.deps import ReleasingRoute, SessionDep
from app.api.schemas import MAX_ID
from app.core.statuses import MeasurementQuantity
from app.services import dashboard, planning
from estimator.engine import DEFAULT_MODE, ENGINE_VERSION
from estimator.units import format_gib

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
TEMPLATES.env.filters["gib"] = format_gib
PAGES = (
    ("overview", "/", "Overview"),
    ("estimate", "/estimate", "Estimate"),
    ("measured", "/measured", "Estimate vs measured"),
    ("jobs", "/jobs", "Jobs"),
    ("training", "/training", "Training results"),
    ("table2", "/table2", "Table 2"),
)
FAMILIES = ("ae", "ae-embedding", "bae", "tanh-bae")
# The measured quantities (app/core/statuses.py), as the Estimate-vs-measured page names them.
QUANTITY_LABELS: tuple[tuple[MeasurementQuantity, str], ...] = (
    ("training_peak", "training peak (bytes in use)"),
    ("model_size", "model size (TFLite file bytes)"),
    ("latency", "latency (LiteRT, µs)"),
)

router = APIRouter(include_in_schema=False, route_class=ReleasingRoute)


def render(request: Request, page: str, title: str, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        f"{page}.html",
        {
            "page": page,
            "title": title,
            "pages": PAGES,
            "assets": request.app.state.assets.urls,
            "engine_version": ENGINE_VERSION,
            "default_mode": DEFAULT_MODE,
            "families": FAMILIES,
            **context,
        },
    )


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, session: SessionDep) -> HTMLResponse:
    return render(request, "overview", "Overview", overview=dashboard.overview(session))


@router.get("/estimate", response_class=HTMLResponse)
def estimate_page(request: Request, session: SessionDep) -> HTMLResponse:
    devices = planning.list_devices(session)
    return render(request, "estimate", "Estimate", devices=devices)


@router.get("/measured", response_class=HTMLResponse)
def measured_page(request: Request, session: SessionDep) -> HTMLResponse:
    by_device = dashboard.measurements_by_device(session)
    return render(
        request,
        "measured",
        "Estimate vs measured",
        by_device=by_device,
        default_device=dashboard.default_device(by_device),
        quantities=QUANTITY_LABELS,
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: SessionDep) -> HTMLResponse:
    devices = planning.list_devices(session)
    return render(request, "jobs", "Jobs", devices=devices, job_id=None)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, session: SessionDep, job_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]
) -> HTMLResponse:
    devices = planning.list_devices(session)
    return render(request, "jobs", f"Job {job_id}", devices=devices, job_id=job_id)


@router.get("/training", response_class=HTMLResponse)
def training_page(request: Request) -> HTMLResponse:
    return render(request, "training", "Training results")


@router.get("/table2", response_class=HTMLResponse)
def table2_page(request: Request) -> HTMLResponse:
    cells = dashboard.table2()
    columns = list(dict.fromkeys(cell["column"] for cell in cells))
    nts = list(dict.fromkeys(cell["nt"] for cell in cells))
    rows = [
        (k, [cell for cell in cells if cell["k"] == k])
        for k in dict.fromkeys(cell["k"] for cell in cells)
    ]
    return render(request, "table2", "Table 2", columns=columns, nts=nts, rows=rows, cells=cells)
