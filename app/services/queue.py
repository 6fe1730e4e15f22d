"""Jobs as a durable queue in the database: the worker's claims, leases and outcomes.

The `jobs` table is the record of truth: the API inserts `queued` rows, a worker claims
one with a conditional UPDATE (``... WHERE id = :id AND status = 'queued'``; one winner on
SQLite, whose writers are serialized by BEGIN IMMEDIATE, and on PostgreSQL, where the
candidate rows are also locked with FOR UPDATE SKIP LOCKED), holds it under a lease that
it renews while the job runs, and writes the outcome back only while it still holds the
lease. A worker that dies leaves its lease to expire; the next worker to start (and every
worker, periodically) puts such jobs back in the queue, or fails them once they have used
up `max_attempts` claims.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.db.models import Estimate as EstimateRow
from app.db.models import Job, utcnow
from app.db.models import Spec as SpecRow
from app.db.session import begin_write
from app.services import estimates, measurements

LEASE_EXPIRED = (
    "the worker running this job stopped renewing its lease (it died or lost the database) "
    "on each of its attempts"
)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    device_class: str
    mode: str
    spec_json: str
    params: dict[str, Any]
    attempts: int
    max_attempts: int


def _class_filter(classes: Collection[str]) -> Any:
    if "cpu" in classes:
        return (Job.device_class.in_(list(classes))) | (Job.device_class.is_(None))
    return Job.device_class.in_(list(classes))


def claim(
    session: Session,
    owner: str,
    *,
    lease_s: float,
    classes: Collection[str],
    limit: int = 1,
) -> list[ClaimedJob]:
    """Atomically lease up to `limit` queued jobs of the given device classes, oldest first."""
    if limit <= 0 or not classes:
        return []
    begin_write(session)
    candidates = session.scalars(
        select(Job.id)
        .where(Job.status == "queued", _class_filter(classes))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    now = utcnow()
    won = [job_id for job_id in candidates if _lease(session, job_id, owner, now, lease_s)]
    claimed = _claimed(session, won) if won else []
    session.commit()
    return claimed


def _lease(session: Session, job_id: int, owner: str, now: datetime, lease_s: float) -> bool:
    """Take a queued job's lease; False when another worker took it first."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running",
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            progress=0.05,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _claimed(session: Session, job_ids: list[int]) -> list[ClaimedJob]:
    """The just-leased jobs with their specs, as the worker runs them."""
    rows = session.execute(
        select(Job, SpecRow.canonical_json)
        .join(SpecRow, Job.spec_id == SpecRow.id)
        .where(Job.id.in_(job_ids))
        .order_by(Job.id)
        .execution_options(populate_existing=True)
    ).all()
    return [
        ClaimedJob(
            id=job.id,
            kind=job.kind,
            device_class=job.device_class or "cpu",
            mode=job.mode,
            spec_json=canonical,
            params=dict(job.params or {}),
            attempts=job.attempts,
            max_attempts=job.max_attempts,
        )
        for job, canonical in rows
    ]


def renew(session: Session, owner: str, job_ids: Iterable[int], *, lease_s: float) -> set[int]:
    """Extend the leases this owner holds; returns the ids it no longer holds (lost)."""
    ids = list(job_ids)
    if not ids:
        return set()
    begin_write(session)
    session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.lease_owner == owner, Job.status == "running")
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    held = set(
        session.scalars(
            select(Job.id).where(Job.id.in_(ids), Job.lease_owner == owner, Job.status == "running")
        )
    )
    session.commit()
    return set(ids) - held


def set_progress(session: Session, owner: str, job_id: int, progress: float) -> None:
    begin_write(session)
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
        .values(progress=progress)
        .execution_options(synchronize_session=False)
    )
    session.commit()


PROGRESS_FIELDS = ("phase", "step", "total_steps", "loss", "ebn0_db", "progress")


def set_training_progress(session: Session, owner: str, job_id: int, **values: Any) -> bool:
    """Write a training run's progress columns; False when `owner` no longer holds the job."""
    unknown = set(values) - set(PROGRESS_FIELDS)
    if unknown:
        raise ValueError(f"not progress columns: {sorted(unknown)}")
    begin_write(session)
    count = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return bool(count)


def retry_or_fail(session: Session, owner: str, job: ClaimedJob, error: str) -> str:
    """A run whose process was killed: back to the queue (its next claim counts as an
    attempt and resumes from the checkpoint), or failed once out of attempts.

    Returns the new status ('queued' or 'failed'; '' when the lease was lost).
    """
    begin_write(session)
    held = (Job.id == job.id) & (Job.lease_owner == owner) & (Job.status == "running")
    if job.attempts >= job.max_attempts:
        values: dict[str, Any] = {
            "status": "failed",
            "finished_at": utcnow(),
            "error": f"{error} (on each of {job.attempts} attempts)",
        }
    else:
        values = {"status": "queued", "error": error}
    count = session.execute(
        update(Job)
        .where(held)
        .values(lease_owner=None, lease_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return str(values["status"]) if count else ""


def requeue_stale(session: Session, now: datetime | None = None) -> tuple[int, int]:
    """Running jobs whose lease expired: back to the queue, or failed when out of attempts.

    Returns (requeued, failed).
    """
    now = now or utcnow()
    begin_write(session)
    expired = (Job.status == "running") & (Job.lease_expires_at < now)
    failed = session.execute(
        update(Job)
        .where(expired, Job.attempts >= Job.max_attempts)
        .values(
            status="failed",
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
            error=LEASE_EXPIRED,
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    requeued = session.execute(
        update(Job)
        .where(expired, Job.attempts < Job.max_attempts)
        .values(status="queued", lease_owner=None, lease_expires_at=None, progress=0.0)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(requeued), int(failed)


def release(session: Session, owner: str, job_ids: Iterable[int]) -> int:
    """Put this owner's running jobs back in the queue (a graceful stop; no attempt spent)."""
    ids = list(job_ids)
    if not ids:
        return 0
    begin_write(session)
    count = session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.lease_owner == owner, Job.status == "running")
        .values(
            status="queued",
            lease_owner=None,
            lease_expires_at=None,
            progress=0.0,
            attempts=func.max(Job.attempts - 1, 0)
            if session.get_bind().dialect.name == "sqlite"
            else func.greatest(Job.attempts - 1, 0),
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(count)


def finish(
    session: Session,
    owner: str,
    job: ClaimedJob,
    *,
    status: str,
    result: dict[str, Any] | None,
    error: str | None = None,
    measurement: dict[str, Any] | None = None,
    ber: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
) -> int | None:
    """Write a job's outcome (its measurement row, BER rows, metrics) if `owner` holds its
    lease.

    Returns the measurement's id (None when there is none or the lease was lost).
    """
    begin_write(session)
    held = session.scalars(
        select(Job.id).where(Job.id == job.id, Job.lease_owner == owner, Job.status == "running")
    ).first()
    if held is None:
        session.rollback()
        return None
    measurement_id: int | None = None
    if measurement is not None:
        measurement_id = measurements.store(session, job.id, measurement)
        if result is not None:
            result = {**result, "measurement_id": measurement_id}
    if ber is not None:
        from app.services.training import store_ber

        store_ber(session, job.id, ber)
    if metrics is not None:
        from app.services.training import store_metrics

        store_metrics(session, job.id, metrics)
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.lease_owner == owner, Job.status == "running")
        .values(
            status=status,
            result=result,
            error=error,
            progress=1.0,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return measurement_id


def add_attempts(session: Session, owner: str, job_id: int, extra: int) -> None:
    """Count `extra` executions of a running job beyond its claim (Ray's retries), while
    `owner` holds its lease."""
    begin_write(session)
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
        .values(attempts=Job.attempts + extra)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def estimate_for(session: Session, job: ClaimedJob) -> dict[str, Any]:
    """The stored estimate of the job's spec (computed and stored if missing)."""
    estimate_id = job.params.get("estimate_id")
    if estimate_id is not None:
        row = session.get(EstimateRow, int(estimate_id))
        if row is not None:
            return {**row.result, "id": row.id}
    from profilers.allocator import parse_spec

    stored = estimates.get_or_create(session, parse_spec(job.spec_json), job.mode)  # type: ignore[arg-type]
    return {**stored.result, "id": stored.id}
