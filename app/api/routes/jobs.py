"""POST /v1/jobs (API key), GET /v1/jobs/{id}, GET /v1/jobs, DELETE /v1/jobs/{id} (API key).

Submitting work needs the X-API-Key header to match PHYMEM_API_KEY. A server started
without PHYMEM_API_KEY refuses every submission (403, saying to set it): jobs execute
code on the workers' machines, so there is no open default. Reading jobs is open, as
estimates are.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import SessionDep, SettingsDep
from app.api.errors import ProblemError, invalid
from app.api.schemas import MAX_ID, ApiSpec, Problem
from app.core.statuses import JobStatus
from app.services import jobs
from app.worker.resources import CLASS_PATTERN
from estimator.engine import Mode

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="The service's PHYMEM_API_KEY.")] = None,
) -> None:
    expected = settings.api_key.get_secret_value() if settings.api_key else ""
    if not expected:
        raise ProblemError(
            403,
            "job submission is disabled on this server: set PHYMEM_API_KEY (and send it as "
            "the X-API-Key header) to enable it",
            title="Forbidden",
        )
    if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), expected.encode()):
        raise ProblemError(
            401,
            "missing or wrong X-API-Key header" if x_api_key else "missing X-API-Key header",
            title="Unauthorized",
        )


ApiKey = Annotated[None, Depends(require_api_key)]
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong X-API-Key."},
    403: {"model": Problem, "description": "Submissions disabled: no PHYMEM_API_KEY set."},
}


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["profile", "train"] = Field(
        default="profile",
        description="'profile': measure one training step's peak and pair it with the "
        "estimate. 'train' is not implemented yet (422).",
    )
    spec: ApiSpec
    device_class: str = Field(
        default="cpu",
        pattern=CLASS_PATTERN,
        description="'cpu', a GPU of GET /v1/devices (e.g. a100-80gb), or a class your "
        "Ray nodes advertise as the resource device:<class>.",
    )
    steps: int = Field(default=3, ge=1, le=100, description="Measured training steps.")
    mode: Mode = Field(default="framework", description="Mode of the paired estimate.")
    memory_limit_bytes: int | None = Field(
        default=None,
        ge=2**20,
        description="Cap the measuring process's address space (a smaller device).",
    )
    timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    max_attempts: int = Field(default=3, ge=1, le=10, description="Claims before failing.")


class JobOut(BaseModel):
    id: int
    url: str
    kind: str
    status: JobStatus
    device_class: str | None
    mode: str
    spec_hash: str | None
    spec: dict[str, Any] | None
    params: dict[str, Any]
    attempts: int
    max_attempts: int
    progress: float
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    items: list[JobOut]
    limit: int
    offset: int


JOB_EXAMPLES: dict[str, Any] = {
    "tiny": {
        "summary": "A tiny BAE on the CPU, one measured step",
        "value": {
            "kind": "profile",
            "spec": {"family": "bae", "k": 2, "nt": 2, "ht": 16, "hr": 32, "batch": 64},
            "device_class": "cpu",
            "steps": 1,
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Queue a profile job",
    responses=AUTH_RESPONSES,
)
def create_job(
    request: JobRequest,
    _: ApiKey,
    session: SessionDep,
    response: Response,
) -> Any:
    """Queue a measurement of the spec on `device_class`; poll the returned URL.

    A worker (`phymem worker`) measures the peak of `steps` training steps in a fresh
    process and stores it next to the estimate (GET /v1/measurements).
    """
    if request.kind == "train":
        raise invalid("kind", "'train' jobs are not implemented yet; only 'profile' runs")
    job = jobs.submit(
        session,
        spec=request.spec,
        kind=request.kind,
        device_class=request.device_class,
        mode=request.mode,
        steps=request.steps,
        memory_limit_bytes=request.memory_limit_bytes,
        timeout_s=request.timeout_s,
        max_attempts=request.max_attempts,
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return jobs.view(session, job)


@router.get("/{job_id}", response_model=JobOut, summary="A job's status, progress and result")
def read_job(job_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep) -> Any:
    return jobs.view(session, jobs.get(session, job_id))


@router.get("", response_model=JobList, summary="Jobs, oldest first")
def list_jobs(
    session: SessionDep,
    status: Annotated[JobStatus | None, Query()] = None,
    kind: Annotated[Literal["profile", "train"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Any:
    found = jobs.search(session, status=status, kind=kind, limit=limit, offset=offset)
    return {"items": [jobs.view(session, job) for job in found], "limit": limit, "offset": offset}


@router.delete("/{job_id}", response_model=JobOut, summary="Cancel a job", responses=AUTH_RESPONSES)
def cancel_job(
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)], _: ApiKey, session: SessionDep
) -> Any:
    """Cancel a queued or running job (a finished one is returned unchanged)."""
    return jobs.view(session, jobs.cancel(session, job_id))
