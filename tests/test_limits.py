"""Cost limits: the engine charges framework-mode work to the request's budget as it runs
(estimator.budget), so work past the budget or the time limit stops midway (422 naming the
reason), and work whose client disconnected stops computing (499), within one estimate or
one search as well as between the specs of a gate."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgi_helpers import call, call_once, dense_model, gate_specs
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from estimator.budget import Budget, bounded
from estimator.engine import estimate
from estimator.errors import BudgetExceeded
from estimator.spec import ModelSpec


@pytest.fixture
def settings(db_url: str, tmp_path: Any) -> Settings:
    # Gates of up to 1000 framework-mode specs in one body (the default asks for a stream).
    return Settings(database_url=db_url, data_dir=tmp_path, max_buffered_items=1000)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_framework_work_past_the_budget_stops_midway(client: Any) -> None:
    start = time.perf_counter()
    big = client.post("/v1/estimates", json={**dense_model(1024), "mode": "framework"})
    one = time.perf_counter() - start
    search = client.post(
        "/v1/max-batch", json={"vram": "80GiB", "spec": dense_model(512), "mode": "framework"}
    )
    assert big.status_code == 200, big.text  # one 1024-layer estimate fits the default budget
    assert search.status_code == 422, search.text
    body = search.json()
    assert body["errors"][0]["field"] == "spec"
    assert "PHYMEM_FRAMEWORK_BUDGET_UNITS" in body["errors"][0]["message"]
    # The same search in paper mode is cheap and allowed.
    paper = client.post(
        "/v1/max-batch", json={"vram": "80GiB", "spec": dense_model(256), "mode": "paper"}
    )
    assert paper.status_code == 200, paper.text
    assert time.perf_counter() - start < 6 * one + 5  # the search stopped (in full: minutes)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_smaller_budget_stops_one_large_estimate_midway(db_url: str, tmp_path: Any) -> None:
    budget = 2**18  # a 512-layer estimate replays about 2^22.7 units
    app = create_app(
        Settings(database_url=db_url, data_dir=tmp_path, framework_budget_units=budget)
    )
    with TestClient(app) as client:
        refused = client.post("/v1/estimates", json={**dense_model(512), "mode": "framework"})
        allowed = client.post("/v1/estimates", json={**dense_model(64), "mode": "framework"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["errors"][0]
    assert error["field"] == "layers" and f"{budget:,} units" in error["message"]
    assert allowed.status_code == 200
    # Midway, counted in the engine's own units (not in seconds: the uncharged trace
    # generation before the replay is a large, machine-dependent share of the time).
    spec = ModelSpec.model_validate(dense_model(512))
    with bounded(Budget()) as unbounded:
        estimate(spec, "framework")
    stopped = Budget(units=budget)
    with bounded(stopped), pytest.raises(BudgetExceeded):
        estimate(spec, "framework")
    assert unbounded is not None and unbounded.spent > 16 * budget
    assert budget < stopped.spent < unbounded.spent / 8, (stopped.spent, unbounded.spent)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_time_limit_stops_one_search_midway(db_url: str, tmp_path: Any) -> None:
    app = create_app(Settings(database_url=db_url, data_dir=tmp_path, request_time_limit_s=0.3))
    with TestClient(app) as client:
        start = time.perf_counter()
        response = client.post(
            "/v1/max-batch", json={"vram": "80GiB", "spec": dense_model(300), "mode": "framework"}
        )
        elapsed = time.perf_counter() - start
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "spec"
    assert "time limit of 0.3 s" in response.json()["errors"][0]["message"]
    assert elapsed < 2.0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_time_limit_stops_a_gate_between_specs(db_url: str, tmp_path: Any) -> None:
    app = create_app(
        Settings(
            database_url=db_url,
            data_dir=tmp_path,
            request_time_limit_s=0.2,
            max_buffered_items=1000,
        )
    )
    with TestClient(app) as client:
        start = time.perf_counter()
        response = client.post(
            "/v1/gate", json={"vram": "80GiB", "mode": "framework", "specs": gate_specs(1000)}
        )
        elapsed = time.perf_counter() - start
    assert response.status_code == 422, response.text
    assert "time limit of 0.2 s" in response.json()["detail"]
    assert elapsed < 3.0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_work_stops_when_the_client_disconnects(app: Any) -> None:
    """Drive the ASGI app directly: the client sends its body, then disconnects."""
    bodies = [
        json.dumps({"vram": "80GiB", "mode": "framework", "specs": gate_specs(200, hr)}).encode()
        for hr in (64, 96)
    ]

    async def both() -> tuple[tuple[list[Any], float], tuple[list[Any], float]]:
        async with app.router.lifespan_context(app):
            stayed = await call(app, "/v1/gate", bodies[0], None)
            left = await call(app, "/v1/gate", bodies[1], 0.05)
            return stayed, left

    (full_sent, full), (left_sent, left) = asyncio.run(both())
    assert full_sent[0]["status"] == 200, full_sent
    assert left_sent[0]["status"] == 499
    assert left < full / 3, (left, full)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_one_search_stops_when_the_client_disconnects(app: Any) -> None:
    body = json.dumps({"vram": "80GiB", "mode": "framework", "spec": dense_model(300)}).encode()
    sent, elapsed = call_once(app, "/v1/max-batch", body, 0.1)
    assert sent[0]["status"] == 499
    assert elapsed < 2.0  # one search of a 300-layer model runs for many seconds in full


def _plan_cost(spec: dict[str, Any]) -> int:
    """Units the engine charges to plan `spec` in framework mode (uncached)."""
    from estimator.budget import Budget, bounded
    from estimator.engine import plan
    from estimator.spec import FamilySpec

    with bounded(Budget()) as budget:
        plan(FamilySpec(**spec), "framework")
    assert budget is not None
    return budget.spent


@pytest.mark.parametrize("backend", ["sqlite"])
def test_batch_curve_is_thinned_by_the_engine_budget_and_refused_past_it(
    db_url: str, tmp_path: Any
) -> None:
    # hr 40: a spec no other test plans, so no cached plan makes a point free.
    deep = {"family": "ae", "k": 1, "nt": 1, "decoder_blocks": 40, "hr": 40, "batch": 8}
    batches = [1, 2, 4, 8, 16]
    cost = {b: _plan_cost({**deep, "batch": b}) for b in batches}
    body = {"spec": deep, "mode": "framework", "batches": batches}

    def curve(units: int) -> Any:
        settings = Settings(database_url=db_url, data_dir=tmp_path, framework_budget_units=units)
        with TestClient(create_app(settings)) as client:
            return client.post("/v1/batch-curve", json=body)

    refused = curve(cost[16] // 2)  # the largest batch is planned first
    assert refused.status_code == 422, refused.text
    error = refused.json()["errors"][0]
    assert error["field"] == "spec" and "PHYMEM_FRAMEWORK_BUDGET_UNITS" in error["message"]
    # Room for both ends, not for the midpoint planned next: an evenly thinned curve.
    thinned = curve(cost[16] + cost[1] + cost[4] - 1)
    assert thinned.status_code == 200, thinned.text
    assert [p["batch"] for p in thinned.json()["points"]] == [1, 16]
    assert thinned.json()["skipped"] == [2, 4, 8]
