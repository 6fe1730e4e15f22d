"""Errors blame the right party: an engine fault is a 500 (API) or exit 3 (CLI), bad input
422 or exit 2.

The fault is injected by replacing an engine function with one that raises, the seam the
services and commands call through; everything else (the app, its database, the CLI's
argument parsing and spec validation) is real.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import estimator.engine
import estimator.gate
from app import gate_cli
from app.cli import app as cli_app
from app.services import estimates as estimate_service

PROBLEM = "application/problem+json"
SPEC = {"family": "ae", "k": 2, "nt": 2, "mode": "paper"}


def _engine_fault(*_: Any, **__: Any) -> Any:
    # A ValueError on purpose: the type the old code mistook for the user's input error.
    raise ValueError("engine bug: negative tensor size")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_api_engine_fault_is_500_with_correlation_id(
    app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(estimate_service, "estimate", _engine_fault)
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="phymem.api"),
    ):
        response = client.post("/v1/estimates", json=SPEC)
        assert response.status_code == 500, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        body = response.json()
        incident = body["correlation_id"]
        assert response.headers["X-Correlation-Id"] == incident
        assert "errors" not in body  # no field is blamed
        assert "negative tensor size" not in body["detail"]  # internals stay in the log
        logged = [r for r in caplog.records if incident in r.getMessage()]
        assert logged and logged[0].exc_info is not None

        # The same route with bad input still blames the field.
        bad = client.post("/v1/estimates", json={**SPEC, "k": 0})
        assert bad.status_code == 422
        assert [e["field"] for e in bad.json()["errors"]] == ["k"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_api_input_error_from_engine_is_422(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from estimator.errors import InvalidSpec

    def refuse(*_: Any) -> Any:
        raise InvalidSpec("layers.3", "unsupported in framework mode")

    monkeypatch.setattr(estimate_service, "estimate", refuse)
    with TestClient(app) as client:
        response = client.post("/v1/estimates", json=SPEC)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "layers.3", "message": "unsupported in framework mode"}
    ]


def test_cli_engine_fault_is_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(estimator.engine, "estimate", _engine_fault)
    runner = CliRunner()
    args = ["estimate", "--family", "ae", "--k", "2", "--nt", "2", "--mode", "paper"]
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error: ValueError" in lines[0]
    assert "--debug" in lines[0]

    debug = runner.invoke(cli_app, ["--debug", *args])
    assert debug.exit_code == 3
    assert "Traceback" in debug.stderr and "_engine_fault" in debug.stderr

    bad = runner.invoke(cli_app, ["estimate", "--family", "ae", "--k", "0", "--nt", "2"])
    assert bad.exit_code == 2
    assert "k" in bad.stderr and "internal" not in bad.stderr


def test_gate_engine_fault_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "ae.json"
    spec.write_text(json.dumps({"family": "ae", "k": 2, "nt": 2}))
    assert gate_cli.main([str(spec), "--vram", "80GiB", "--mode", "paper"]) == 0
    capsys.readouterr()

    monkeypatch.setattr(estimator.gate, "check", _engine_fault)
    assert gate_cli.main([str(spec), "--vram", "80GiB"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("phymem gate: internal error: ValueError")
    assert gate_cli.main([str(spec), "--vram", "80GiB", "--debug"]) == 3
    assert "Traceback" in capsys.readouterr().err

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"family": "ae", "k": 0, "nt": 2}))
    assert gate_cli.main([str(bad), "--vram", "80GiB"]) == 2
    assert "k" in capsys.readouterr().err
