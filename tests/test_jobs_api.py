"""POST/GET/DELETE /v1/jobs and GET /v1/measurements, on SQLite and PostgreSQL (no worker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

API_KEY = "s3cret-key"
TINY = {"family": "bae", "k": 2, "nt": 2, "ht": 16, "hr": 32, "batch": 64}
KEY = {"X-API-Key": API_KEY}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    from app.core.config import Settings

    return Settings(database_url=db_url, data_dir=tmp_path, api_key=API_KEY)


def _submit(client: Any, body: dict[str, Any] | None = None, **headers: str) -> Any:
    payload = {"kind": "profile", "spec": TINY, "steps": 1} if body is None else body
    return client.post("/v1/jobs", json=payload, headers=headers or KEY)


def test_submit_queues_a_job_and_returns_its_url(client: Any) -> None:
    response = _submit(client)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}" == job["url"]
    assert job["status"] == "queued" and job["kind"] == "profile"
    assert job["device_class"] == "cpu" and job["attempts"] == 0 and job["progress"] == 0.0
    assert job["params"]["steps"] == 1 and job["params"]["estimate_id"] >= 1
    assert job["spec"]["family"] == "bae" and len(job["spec_hash"]) == 64

    read = client.get(job["url"])
    assert read.status_code == 200 and read.json()["id"] == job["id"]
    listed = client.get("/v1/jobs", params={"status": "queued"}).json()["items"]
    assert [item["id"] for item in listed] == [job["id"]]
    # The paired estimate was stored at submission and can be read (open, no key).
    estimate = client.get(f"/v1/estimates/{job['params']['estimate_id']}")
    assert estimate.status_code == 200 and estimate.json()["mode"] == "framework"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_submit_without_the_right_key_is_401(client: Any, headers: dict[str, str]) -> None:
    response = client.post("/v1/jobs", json={"spec": TINY}, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "X-API-Key" in response.json()["detail"]
    assert client.get("/v1/jobs").json()["items"] == []


def test_submit_is_refused_when_the_server_has_no_key(db_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app

    app = create_app(Settings(database_url=db_url, data_dir=tmp_path, api_key=None))
    with TestClient(app) as client:
        response = client.post("/v1/jobs", json={"spec": TINY}, headers=KEY)
        assert response.status_code == 403
        assert "PHYMEM_API_KEY" in response.json()["detail"]
        # Estimates stay open.
        assert client.post("/v1/estimates", json=TINY).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"spec": {**TINY, "k": 0}}, "spec.k"),
        ({"spec": TINY, "device_class": "A100 80GB"}, "device_class"),
        ({"spec": TINY, "steps": 0}, "steps"),
        ({"spec": TINY, "memory_limit_bytes": 10}, "memory_limit_bytes"),
        ({"spec": TINY, "fault": "kill-worker"}, "fault"),
        ({"kind": "profile"}, "spec"),
    ],
)
def test_invalid_submissions_name_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    response = _submit(client, body)
    assert response.status_code == 422, response.text
    fields = [error["field"] for error in response.json()["errors"]]
    assert field in fields, fields


def test_unknown_job_is_404(client: Any) -> None:
    response = client.get("/v1/jobs/12345")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_cancel_needs_the_key_and_cancels_a_queued_job(client: Any) -> None:
    job = _submit(client).json()
    assert client.delete(job["url"]).status_code == 401
    cancelled = client.delete(job["url"], headers=KEY)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.get(job["url"]).json()["status"] == "cancelled"


def test_measurements_list_filters_and_validates(client: Any) -> None:
    assert client.get("/v1/measurements").json() == {"items": [], "limit": 50, "offset": 0}
    assert client.get("/v1/measurements", params={"status": "exploded"}).status_code == 422
    assert client.get("/v1/measurements", params={"family": "nope"}).status_code == 422
    assert client.get("/v1/measurements", params={"limit": 0}).status_code == 422


def test_the_published_job_examples_are_accepted(client: Any) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"tiny", "train"}
    for name, example in examples.items():
        response = _submit(client, example["value"])
        assert response.status_code == 202, (name, response.text)
        assert response.json()["kind"] == example["value"]["kind"]
