"""The job queue in the database (app/services/queue.py), on SQLite and PostgreSQL.

Claims are atomic (each job goes to exactly one of many concurrent claimers), leases
expire into the queue again until the job's attempts run out, and only the lease holder
can write a job's outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.models import Job, utcnow
from app.db.session import make_engine, make_sessionmaker
from app.services import jobs, measurements, queue
from estimator.spec import FamilySpec

TINY = FamilySpec(family="bae", k=2, nt=2, ht=16, hr=32, batch=64)


@pytest.fixture
def sessions(db_url: str) -> Iterator[Any]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _submit(session: Session, n: int = 1, **kwargs: Any) -> list[int]:
    return [jobs.submit(session, spec=TINY, mode="paper", **kwargs).id for _ in range(n)]


def _expire(session: Session, job_id: int) -> None:
    session.execute(
        update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=5))
    )
    session.commit()


def test_concurrent_claims_hand_out_each_job_once(db_url: str, sessions: Any) -> None:
    with sessions() as session:
        ids = _submit(session, 12)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        engine = make_engine(db_url)
        mine: list[int] = []
        try:
            with make_sessionmaker(engine)() as session:
                while True:
                    got = queue.claim(session, name, lease_s=60, classes={"cpu"}, limit=2)
                    if not got:
                        break
                    mine += [job.id for job in got]
        except BaseException as error:
            errors.append(error)
        finally:
            claimed[name] = mine
            engine.dispose()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    every = [job_id for mine in claimed.values() for job_id in mine]
    assert sorted(every) == sorted(ids)  # each exactly once
    with sessions() as session:
        for job_id in ids:
            job = jobs.get(session, job_id)
            assert job.status == "running" and job.attempts == 1
            assert job.lease_owner in claimed and job_id in claimed[job.lease_owner]


def test_claims_only_device_classes_the_cluster_serves(sessions: Any) -> None:
    with sessions() as session:
        (gpu,) = _submit(session, device_class="a100-80gb")
        (cpu,) = _submit(session)
        got = queue.claim(session, "w", lease_s=60, classes={"cpu"}, limit=5)
        assert [job.id for job in got] == [cpu]
        assert queue.claim(session, "w", lease_s=60, classes={"cpu"}, limit=5) == []
        got = queue.claim(session, "w", lease_s=60, classes={"cpu", "a100-80gb"}, limit=5)
        assert [(job.id, job.device_class) for job in got] == [(gpu, "a100-80gb")]
        assert got[0].spec_json.startswith("{") and got[0].params["steps"] == 3


def test_expired_leases_are_requeued_until_attempts_run_out(sessions: Any) -> None:
    with sessions() as session:
        (job_id,) = _submit(session, max_attempts=2)
        for attempt in (1, 2):
            (claimed,) = queue.claim(session, "dead", lease_s=60, classes={"cpu"})
            assert claimed.attempts == attempt
            assert queue.requeue_stale(session) == (0, 0)  # lease still valid
            _expire(session, job_id)
            requeued, failed = queue.requeue_stale(session)
            assert (requeued, failed) == ((1, 0) if attempt == 1 else (0, 1))
        job = jobs.get(session, job_id)
        assert job.status == "failed" and job.attempts == 2
        assert job.lease_owner is None and "lease" in (job.error or "")
        assert queue.claim(session, "w", lease_s=60, classes={"cpu"}) == []


def test_only_the_lease_holder_writes_the_outcome(sessions: Any) -> None:
    with sessions() as session:
        (job_id,) = _submit(session)
        (first,) = queue.claim(session, "first", lease_s=60, classes={"cpu"})
        _expire(session, job_id)
        queue.requeue_stale(session)
        (second,) = queue.claim(session, "second", lease_s=60, classes={"cpu"})
        assert second.attempts == 2
        assert queue.renew(session, "first", [job_id], lease_s=60) == {job_id}  # lost
        assert queue.renew(session, "second", [job_id], lease_s=60) == set()
        assert (
            queue.finish(session, "first", first, status="succeeded", result={"status": "ok"})
            is None
        )
        assert jobs.get(session, job_id).status == "running"
        estimate = queue.estimate_for(session, second)
        measurement_id = queue.finish(
            session,
            "second",
            second,
            status="oom",
            result={"status": "oom"},
            error="out of memory",
            measurement={
                "estimate_id": estimate["id"],
                "device": "cpu",
                "status": "oom",
                "measured_bytes": None,
            },
        )
        assert measurement_id is not None
        job = jobs.get(session, job_id)
        assert job.status == "oom" and job.progress == 1.0 and job.lease_owner is None
        assert job.result == {"status": "oom", "measurement_id": measurement_id}
        (pair,) = measurements.list_measurements(session, job_id=job_id)
        assert pair["status"] == "oom" and pair["measured_bytes"] is None
        assert pair["estimate_bytes"] == int(estimate["total_bytes"])


def test_release_puts_jobs_back_without_spending_an_attempt(sessions: Any) -> None:
    with sessions() as session:
        (job_id,) = _submit(session)
        queue.claim(session, "w", lease_s=60, classes={"cpu"})
        assert queue.release(session, "other", [job_id]) == 0
        assert queue.release(session, "w", [job_id]) == 1
        job = jobs.get(session, job_id)
        assert job.status == "queued" and job.attempts == 0 and job.lease_owner is None


def test_cancelling_a_running_job_revokes_its_lease(sessions: Any) -> None:
    with sessions() as session:
        (job_id,) = _submit(session)
        queue.claim(session, "w", lease_s=60, classes={"cpu"})
        assert jobs.cancel(session, job_id).status == "cancelled"
        assert queue.renew(session, "w", [job_id], lease_s=60) == {job_id}
