"""`phymem db upgrade|downgrade|current` and `phymem serve`'s refusal of an empty database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.cli_service import register

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_db_commands(cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("PHYMEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PHYMEM_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        result = runner.invoke(cli, ["db", "current"])
        assert result.exit_code == 0 and "phymem db upgrade" in result.output
        refused = runner.invoke(cli, ["serve", "--port", "1"])
        assert refused.exit_code == 1
        assert "phymem db upgrade" in refused.output
        result = runner.invoke(cli, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "data" / "phymem.db").exists()
        assert "up to date" in runner.invoke(cli, ["db", "current"]).output
        missing = runner.invoke(cli, ["db", "downgrade"])
        assert missing.exit_code == 2  # a target is required
        refused = runner.invoke(cli, ["db", "downgrade", "base"])
        assert refused.exit_code == 2 and "pass --yes" in refused.output
        assert "up to date" in runner.invoke(cli, ["db", "current"]).output  # nothing dropped
        unknown = runner.invoke(cli, ["db", "downgrade", "zzzz", "--yes"])
        assert unknown.exit_code == 2 and len(unknown.output.strip().splitlines()) == 1
        assert "Traceback" not in unknown.output
        result = runner.invoke(cli, ["db", "downgrade", "base", "--yes"])
        assert result.exit_code == 0 and "at base" in result.output
        at_base = runner.invoke(cli, ["db", "downgrade", "base", "--yes"])
        assert at_base.exit_code == 2 and "nothing to downgrade" in at_base.output
        assert len(at_base.output.strip().splitlines()) == 1
    finally:
        get_settings.cache_clear()


def test_cli_service_imports_no_heavy_modules() -> None:
    code = (
        "import sys, app.cli_service\n"
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'alembic', 'uvicorn') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_upgrade_removes_estimates_of_older_engines_unless_measured(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from app.core.config import get_settings
    from app.db.models import Estimate, Measurement, Spec
    from app.db.session import make_engine, make_sessionmaker
    from estimator.engine import ENGINE_VERSION

    monkeypatch.setenv("PHYMEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PHYMEM_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
        engine = make_engine(get_settings().sqlalchemy_url)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            spec = Spec(spec_hash="0" * 64, kind="family", canonical_json="{}")
            session.add(spec)
            session.flush()
            rows = {
                version: Estimate(
                    spec_id=spec.id,
                    mode="paper",
                    engine_version=version,
                    total_bytes="1",
                    breakdown={},
                    result={},
                )
                for version in (ENGINE_VERSION, "old-unmeasured", "old-measured")
            }
            session.add_all(rows.values())
            session.flush()
            session.add(Measurement(estimate_id=rows["old-measured"].id, device="cpu", status="ok"))
            session.commit()

        result = runner.invoke(cli, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "removed 1 stored estimate(s) of older engine versions" in result.output
        with sessions() as session:
            kept = set(session.scalars(select(Estimate.engine_version)))
        assert kept == {ENGINE_VERSION, "old-measured"}
        result = runner.invoke(cli, ["db", "upgrade"])
        assert result.exit_code == 0 and "removed" not in result.output
        engine.dispose()
    finally:
        get_settings.cache_clear()
