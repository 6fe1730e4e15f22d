"""The database layer: SQLite pragmas, constraints, exact big integers, concurrent writers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from app.db.models import Estimate, Job, Measurement, Spec
from app.db.session import make_engine, make_sessionmaker
from app.services import estimates
from estimator.engine import estimate
from estimator.spec import FamilySpec


@pytest.fixture
def factory(db_url: str) -> Any:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_sqlite_pragmas(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    engine.dispose()
    assert (tmp_path / "sub" / "x.db").exists()


def test_jobs_and_measurements(factory: Any) -> None:
    spec = FamilySpec(family="ae", k=64, nt=10)
    with factory() as session:
        stored = estimates.get_or_create(session, spec, "paper")
        job = Job(kind="profile", spec_id=session.get(Estimate, stored.id).spec_id)
        session.add(job)
        session.commit()
        assert (job.status, job.attempts, job.max_attempts, job.progress) == (
            "queued",
            0,
            3,
            0.0,
        )
        job.status = "running"
        job.lease_owner = "worker-1"
        job.lease_expires_at = datetime.now(UTC) + timedelta(minutes=5)
        job.started_at = datetime.now(UTC)
        session.add(
            Measurement(
                estimate_id=stored.id,
                job_id=job.id,
                device="NVIDIA H100 80GB HBM3",
                framework_versions={"tensorflow": "2.21.0"},
                measured_peak_bytes=str(estimate(spec).total_bytes),
                nvml_peak_bytes=2**36,
                step_time_s=0.25,
                status="ok",
            )
        )
        session.commit()
    with factory() as session:
        measurement = session.scalars(select(Measurement)).one()
        assert int(measurement.measured_peak_bytes) == estimate(spec).total_bytes
        assert measurement.framework_versions == {"tensorflow": "2.21.0"}
        assert session.scalars(select(Job)).one().lease_owner == "worker-1"


@pytest.mark.parametrize(
    "row",
    [
        lambda: Job(kind="bake", spec_id=1),
        lambda: Job(kind="train", spec_id=1, status="lost"),
        lambda: Job(kind="train", spec_id=424242),  # no such spec: foreign key
        lambda: Measurement(estimate_id=424242, device="x", status="ok"),
        lambda: Measurement(estimate_id=1, device="x", status="meh"),
    ],
)
def test_constraints(factory: Any, row: Any) -> None:
    with factory() as session:
        estimates.get_or_create(session, FamilySpec(family="bae", k=2, nt=2), "paper")
    with factory() as session:
        session.add(row())
        with pytest.raises(IntegrityError):
            session.commit()


def test_threads_lose_no_writes(factory: Any) -> None:
    specs = [FamilySpec(family="ae", k=k, nt=nt) for k in range(1, 5) for nt in range(1, 5)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    found: dict[str, set[int]] = {}
    lock = threading.Lock()

    def worker(offset: int) -> None:
        try:
            barrier.wait()
            for index in range(len(specs)):
                spec = specs[(index + offset) % len(specs)]
                with factory() as session:
                    stored = estimates.get_or_create(session, spec, "paper")
                with lock:
                    found.setdefault(stored.spec_hash, set()).add(stored.id)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(found) == len(specs)
    assert all(len(ids) == 1 for ids in found.values())
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Spec)) == len(specs)
        assert session.scalar(select(func.count()).select_from(Estimate)) == len(specs)
