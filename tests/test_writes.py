"""Bounded writes: anonymous estimates stop being stored past the store limit (answered
with id null), a caller with the API key always stores; job submissions are rate-limited
per key (429 with Retry-After)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.config import Settings
from app.db.models import Spec
from app.main import create_app

KEY = "writes-test-key"


def _specs(app: Any) -> int:
    with app.state.sessionmaker() as session:
        return int(session.scalar(select(func.count()).select_from(Spec)))


def test_anonymous_estimates_are_stored_within_the_limit(db_url: str, tmp_path: Any) -> None:
    app = create_app(
        Settings(database_url=db_url, data_dir=tmp_path, api_key=KEY, anonymous_max_specs=2)
    )
    with TestClient(app) as client:
        ids = [
            client.post("/v1/estimates", json={"family": "ae", "k": 2, "nt": nt, "mode": "paper"})
            for nt in (2, 3, 4)
        ]
        assert [r.status_code for r in ids] == [200, 200, 200]
        first, second, third = (r.json() for r in ids)
        assert isinstance(first["id"], int) and isinstance(second["id"], int)
        assert third["id"] is None and third["total_bytes"] > 0  # answered, not stored
        assert _specs(app) == 2
        # Already stored specs are still served with their ids.
        again = client.post(
            "/v1/estimates", json={"family": "ae", "k": 2, "nt": 2, "mode": "paper"}
        )
        assert again.json()["id"] == first["id"]
        keyed = client.post(
            "/v1/estimates",
            json={"family": "ae", "k": 2, "nt": 4, "mode": "paper"},
            headers={"X-API-Key": KEY},
        )
        assert isinstance(keyed.json()["id"], int)
        assert _specs(app) == 3


@pytest.mark.parametrize("backend", ["sqlite"])
def test_large_anonymous_specs_are_not_stored(db_url: str, tmp_path: Any) -> None:
    app = create_app(Settings(database_url=db_url, data_dir=tmp_path, anonymous_max_spec_bytes=200))
    model = {
        "input_kind": "one_hot",
        "input_size": 4,
        "layers": [{"type": "dense", "units": 4}] * 10,
        "loss": "mse",
        "mode": "paper",
    }
    with TestClient(app) as client:
        big = client.post("/v1/estimates", json=model)
        small = client.post(
            "/v1/estimates", json={"family": "ae", "k": 2, "nt": 2, "mode": "paper"}
        )
    assert big.status_code == 200 and big.json()["id"] is None
    assert isinstance(small.json()["id"], int)
    assert _specs(app) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_job_submissions_are_rate_limited_per_key(db_url: str, tmp_path: Any) -> None:
    app = create_app(
        Settings(database_url=db_url, data_dir=tmp_path, api_key=KEY, jobs_per_minute=2)
    )
    job = {"spec": {"family": "ae", "k": 2, "nt": 2}, "steps": 1}
    with TestClient(app) as client:
        answers = [client.post("/v1/jobs", json=job, headers={"X-API-Key": KEY}) for _ in range(3)]
        wrong_key = client.post("/v1/jobs", json=job, headers={"X-API-Key": "nope"})
    assert [a.status_code for a in answers] == [202, 202, 429]
    limited = answers[2]
    assert limited.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert "PHYMEM_JOBS_PER_MINUTE" in limited.json()["detail"]
    assert wrong_key.status_code == 401  # authentication comes before the count
