"""The API's job service: queue a job, read it, list jobs, cancel one.

A job is a row of the `jobs` table, inserted `queued`; the workers take it from there
through app/services/queue.py, which explains how a job is claimed, leased and finished.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.statuses import TERMINAL_STATUSES as TERMINAL
from app.db.models import Job, utcnow
from app.db.models import Spec as SpecRow
from app.db.session import begin_write
from app.services import estimates
from app.services.filters import where_given
from estimator.errors import NotFound
from estimator.spec import AnySpec


def submit(
    session: Session,
    *,
    spec: AnySpec,
    kind: str = "profile",
    device_class: str = "cpu",
    mode: str = "framework",
    steps: int = 3,
    memory_limit_bytes: int | None = None,
    timeout_s: float | None = None,
    max_attempts: int = 3,
    fault: str | None = None,
    extra_params: dict[str, Any] | None = None,
    total_steps: int | None = None,
) -> Job:
    """Store the spec and its estimate, then queue a job; returns the new row.

    Train jobs pass their resolved `train` / `evaluate` parameters as `extra_params` and
    their step count as `total_steps`.
    """
    stored = estimates.get_or_create(session, spec, mode)  # type: ignore[arg-type]
    spec_id = session.execute(
        select(SpecRow.id).where(SpecRow.spec_hash == stored.spec_hash)
    ).scalar_one()
    params: dict[str, Any] = {"steps": steps, "estimate_id": stored.id}
    if memory_limit_bytes is not None:
        params["memory_limit_bytes"] = memory_limit_bytes
    if timeout_s is not None:
        params["timeout_s"] = timeout_s
    if fault is not None:
        params["fault"] = fault
    if extra_params:
        params.update(extra_params)
    begin_write(session)
    job = Job(
        kind=kind,
        status="queued",
        spec_id=spec_id,
        mode=mode,
        device_class=device_class,
        params=params,
        attempts=0,
        max_attempts=max_attempts,
        progress=0.0,
        created_at=utcnow(),
        total_steps=total_steps,
    )
    session.add(job)
    session.commit()
    return job


def get(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def view(session: Session, job: Job) -> dict[str, Any]:
    spec = session.get(SpecRow, job.spec_id)
    params = dict(job.params or {})
    params.pop("fault", None)
    return {
        "id": job.id,
        "url": f"/v1/jobs/{job.id}",
        "kind": job.kind,
        "status": job.status,
        "device_class": job.device_class,
        "mode": job.mode,
        "spec_hash": spec.spec_hash if spec else None,
        "spec": json.loads(spec.canonical_json) if spec else None,
        "params": params,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "phase": job.phase,
        "step": job.step,
        "total_steps": job.total_steps,
        "loss": job.loss,
        "ebn0_db": job.ebn0_db,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def search(
    session: Session, *, status: str | None, kind: str | None, limit: int, offset: int
) -> list[Job]:
    query = where_given(select(Job), (Job.status, status), (Job.kind, kind))
    return list(session.scalars(query.order_by(Job.id).limit(limit).offset(offset)))


def cancel(session: Session, job_id: int) -> Job:
    """Cancel a queued or running job (a running one is stopped at its next lease renewal)."""
    begin_write(session)
    job = get(session, job_id)
    if job.status not in TERMINAL:
        job.status = "cancelled"
        job.finished_at = utcnow()
        job.lease_owner = None
        job.lease_expires_at = None
        job.error = "cancelled by request"
    session.commit()
    return job
