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
        result = runner.invoke(cli, ["db", "downgrade", "base"])
        assert result.exit_code == 0 and "at base" in result.output
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
