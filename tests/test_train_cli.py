"""`phymem train`: bad input is one line naming the flag and exit 2 (nothing runs)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import app

BASE = ["train", "--family", "tanh-bae", "--k", "2", "--nt", "2"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--steps", "0"], "--steps"),
        (["--lr", "-1"], "--lr"),
        (["--channel", "fading"], "--channel"),
        (["--cross", "2"], "--cross"),
        (["--train-ebn0", "9,2"], "--train-ebn0"),
        (["--train-ebn0", "hot"], "--train-ebn0"),
        (["--eval-ebn0", "5:1"], "--eval-ebn0"),
        (["--baselines", "zf,sic"], "--baselines"),
        (["--target-errors", "0"], "--target-errors"),
        (["--checkpoint-every", "0"], "--checkpoint-every"),
        (["--n", "2"], "--n"),
        (["--nr", "3"], "--nr"),
        (["--optimizer", "none"], "--optimizer"),
        (["--nt", "8", "--k", "4"], "--baselines"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args: list[str], flag: str) -> None:
    result = CliRunner().invoke(app, [*BASE, *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"phymem: error: {flag}:"), result.output


def test_unreachable_service_is_exit_2() -> None:
    args = [*BASE, "--submit", "--wait", "--url", "http://127.0.0.1:9", "--api-key", "k"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "127.0.0.1:9" in result.output
