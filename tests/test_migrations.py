"""Migrations: up, down and up again on both databases; the models match the migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from app.db import migrate
from app.db.models import Base, Device
from app.db.session import make_engine
from estimator.devices import DEVICES

ROOT = Path(__file__).resolve().parents[1]
TABLES = {
    "specs",
    "estimates",
    "devices",
    "jobs",
    "measurements",
    "ber_results",
    "rate_events",
    "job_metrics",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    assert migrate.current(empty_db_url) == set()
    migrate.upgrade(empty_db_url)
    assert migrate.current(empty_db_url) == migrate.head_revisions()
    assert _tables(empty_db_url) == TABLES
    migrate.downgrade(empty_db_url, "base")
    assert migrate.current(empty_db_url) == set()
    assert _tables(empty_db_url) == set()
    migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == TABLES
    assert _diff(empty_db_url) == []


def test_models_match_migrations(db_url: str) -> None:
    assert _diff(db_url) == []


def test_devices_seeded_from_the_catalog(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Device.name, Device.label, Device.memory_bytes))
            seeded = {name: (label, size) for name, label, size in rows}
    finally:
        engine.dispose()
    assert seeded == {d.name: (d.label, d.memory_bytes) for d in DEVICES.values()}, (
        "estimator/devices.py changed: add a migration that updates the devices table"
    )


def test_alembic_ini_from_the_repository_root(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = os.environ | {"PHYMEM_DATABASE_URL": url}
    for args in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
        result = subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    assert _tables(url) == TABLES


def test_training_revision_upgrades_and_downgrades_with_jobs_kept(empty_db_url: str) -> None:
    from sqlalchemy import text

    migrate.upgrade(empty_db_url, "0001")
    assert "ber_results" not in _tables(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO specs (id, spec_hash, kind, canonical_json, created_at) "
                    "VALUES (1, 'h', 'family', '{}', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO jobs (id, kind, status, spec_id, mode, attempts, max_attempts,"
                    " progress, created_at) VALUES (7, 'profile', 'queued', 1, 'paper', 0, 3,"
                    " 0.0, CURRENT_TIMESTAMP)"
                )
            )
        migrate.upgrade(empty_db_url, "0002")
        assert migrate.current(empty_db_url) == {"0002"}
        columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
        assert {"phase", "step", "total_steps", "loss", "ebn0_db"} <= columns
        with engine.connect() as connection:
            row = connection.execute(text("SELECT id, phase, step FROM jobs")).one()
        assert tuple(row) == (7, None, None)
        migrate.downgrade(empty_db_url, "0001")
        assert "ber_results" not in _tables(empty_db_url)
        columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
        assert "phase" not in columns
        with engine.connect() as connection:
            assert connection.execute(text("SELECT id FROM jobs")).scalar_one() == 7
    finally:
        engine.dispose()


def test_0003_adds_the_rate_events_and_removes_them(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "0002")
    assert "rate_events" not in _tables(empty_db_url)
    migrate.upgrade(empty_db_url, "0003")
    assert "rate_events" in _tables(empty_db_url)
    migrate.downgrade(empty_db_url, "0002")
    assert "rate_events" not in _tables(empty_db_url)


def test_0004_adds_quantities_with_existing_measurements_kept(empty_db_url: str) -> None:
    from sqlalchemy import text

    migrate.upgrade(empty_db_url, "0003")
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO specs (id, spec_hash, kind, canonical_json, created_at) "
                    "VALUES (1, 'h', 'family', '{}', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO estimates (id, spec_id, mode, engine_version, total_bytes,"
                    " breakdown, result, created_at) VALUES (2, 1, 'paper', 'v', '10', '{}',"
                    " '{}', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO measurements (id, estimate_id, device, framework_versions,"
                    " measured_peak_bytes, status, created_at) VALUES (3, 2, 'cpu', '{}',"
                    " '12', 'ok', CURRENT_TIMESTAMP)"
                )
            )
        migrate.upgrade(empty_db_url, "0004")
        assert "job_metrics" in _tables(empty_db_url)
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT id, quantity, measured_value, measured_peak_bytes FROM measurements")
            ).one()
        assert tuple(row) == (3, "training_peak", None, "12")
        with engine.begin() as connection, pytest.raises(IntegrityError):
            connection.execute(
                text(
                    "INSERT INTO measurements (id, estimate_id, device, framework_versions,"
                    " status, created_at, quantity) VALUES (4, 2, 'cpu', '{}', 'ok',"
                    " CURRENT_TIMESTAMP, 'flops')"
                )
            )
        migrate.downgrade(empty_db_url, "0003")
        assert "job_metrics" not in _tables(empty_db_url)
        columns = {c["name"] for c in inspect(engine).get_columns("measurements")}
        assert not {"quantity", "measured_value", "estimated_value", "detail"} & columns
        with engine.connect() as connection:
            row = connection.execute(text("SELECT id, measured_peak_bytes FROM measurements"))
            assert tuple(row.one()) == (3, "12")
    finally:
        engine.dispose()


def test_job_metrics_go_with_their_job(db_url: str) -> None:
    from sqlalchemy.orm import Session

    from app.db.models import Job, JobMetric, Spec

    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            spec = Spec(spec_hash="m" * 64, kind="family", canonical_json="{}")
            session.add(spec)
            session.flush()
            job = Job(kind="train", spec_id=spec.id, mode="paper")
            session.add(job)
            session.flush()
            session.add(JobMetric(job_id=job.id, name="ber", value=1e-3, ebn0_db=12.0))
            session.commit()
            stored = session.execute(select(JobMetric.name, JobMetric.detail)).one()
            assert tuple(stored) == ("ber", {})
            session.delete(job)
            session.commit()
            assert session.execute(select(JobMetric)).first() is None
    finally:
        engine.dispose()
