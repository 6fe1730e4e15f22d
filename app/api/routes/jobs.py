"""POST /v1/jobs (API key), GET /v1/jobs/{id}, GET /v1/jobs, DELETE /v1/jobs/{id} (API key),
and a training job's results: GET /v1/jobs/{id}/ber, /metrics, /history and /model.

Submitting work needs the X-API-Key header to match PHYMEM_API_KEY. A server started
without PHYMEM_API_KEY refuses every submission (403, saying to set it): jobs execute
code on the workers' machines, so there is no open default. Reading jobs is open, as
estimates are.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response
from fastapi.responses import FileResponse

from app.api.deps import JobRateLimit, ReleasingRoute, SessionDep, SettingsDep
from app.api.errors import ProblemError, invalid
from app.api.schemas import (
    JOB_EXAMPLES,
    MAX_ID,
    BerOut,
    EvaluateParams,
    HistoryOut,
    JobList,
    JobOut,
    JobRequest,
    MetricsOut,
    Problem,
    TrainParams,
)
from app.core.statuses import JobStatus
from app.services import jobs, training

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=ReleasingRoute)


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
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": Problem,
        "description": "Past PHYMEM_JOBS_PER_MINUTE for this key; retry after Retry-After s.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong X-API-Key."},
    403: {"model": Problem, "description": "Submissions disabled: no PHYMEM_API_KEY set."},
}


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Queue a profile or training job",
    responses=AUTH_RESPONSES | RATE_LIMITED,
)
def create_job(
    request: Annotated[JobRequest, Body(openapi_examples=JOB_EXAMPLES)],
    _: ApiKey,
    __: JobRateLimit,
    session: SessionDep,
    response: Response,
) -> Any:
    """Queue a measurement or a training run of the spec on `device_class`; poll the URL.

    'profile': a worker (`phymem worker`) measures the peak of `steps` training steps in a
    fresh process and stores it next to the estimate (GET /v1/measurements).
    'train': the worker trains the model (`train`), stores its allocator peak next to the
    estimate of the same spec and batch, and evaluates it (`evaluate`): GET .../ber,
    .../history and .../model once it has succeeded.
    """
    spec: Any = request.spec
    extra: dict[str, Any] | None = None
    total_steps = None
    if request.kind == "train":
        try:
            spec, train, evaluate = training.resolve(
                spec, request.train or TrainParams(), request.evaluate or EvaluateParams()
            )
        except training.InvalidTraining as error:
            raise invalid(error.field, error.message) from None
        extra = {"train": train.model_dump(mode="json"), "evaluate": evaluate.model_dump()}
        total_steps = train.steps
    else:
        for name in ("train", "evaluate"):
            if getattr(request, name) is not None:
                raise invalid(name, "only for kind 'train'")
    job = jobs.submit(
        session,
        spec=spec,
        kind=request.kind,
        device_class=request.device_class,
        mode=request.mode,
        steps=request.steps,
        memory_limit_bytes=request.memory_limit_bytes,
        timeout_s=request.timeout_s,
        max_attempts=request.max_attempts,
        extra_params=extra,
        total_steps=total_steps,
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


def _train_job(session: Any, job_id: int) -> Any:
    job = jobs.get(session, job_id)
    if job.kind != "train":
        raise ProblemError(404, f"job {job_id} is a {job.kind} job: it has no training results")
    return job


@router.get("/{job_id}/ber", response_model=BerOut, summary="A training job's BER curves")
def read_ber(job_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep) -> Any:
    """The trained model's and the baselines' BER/SER/BLER per Eb/N0 point (empty until
    the job has succeeded)."""
    _train_job(session, job_id)
    return {"job_id": job_id, "rows": training.ber_rows(session, job_id)}


@router.get("/{job_id}/metrics", response_model=MetricsOut, summary="A training job's metrics")
def read_metrics(job_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep) -> Any:
    """CsiNet's NMSE (dB) and rho on its held-out channels, DetNet's BER at 12 dB, each with
    the untrained model's value in `detail` (empty until the job has succeeded, and for
    the autoencoders, whose results are their BER rows)."""
    _train_job(session, job_id)
    return {"job_id": job_id, "metrics": training.metric_rows(session, job_id)}


@router.get(
    "/{job_id}/history",
    response_model=HistoryOut,
    summary="A training job's loss per step",
    responses={404: {"model": Problem, "description": "No such job, or no history yet."}},
)
def read_history(
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, settings: SettingsDep
) -> Any:
    """The training loss at every step so far (as of the last checkpoint while running)."""
    _train_job(session, job_id)
    history = training.read_history(settings.data_dir, job_id)
    if history is None:
        raise ProblemError(404, f"job {job_id} has no loss history yet")
    return {"job_id": job_id, "loss": history}


@router.get(
    "/{job_id}/model",
    response_class=FileResponse,
    summary="A training job's trained model (.keras)",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The .keras file."},
        404: {"model": Problem, "description": "No such job, or no model yet."},
    },
)
def read_model(
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, settings: SettingsDep
) -> Any:
    """The trained Keras model: `app.worker.training.load_model(path)` reads it (it
    registers the model's channel layers, then calls `keras.saving.load_model`)."""
    job = _train_job(session, job_id)
    path = training.artifact(settings.data_dir, job_id, training.MODEL_FILE)
    if path is None or job.status != "succeeded":
        raise ProblemError(404, f"job {job_id} has no trained model (status {job.status})")
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"phymem-job-{job_id}.keras"
    )
