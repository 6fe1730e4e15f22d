"""The HTTP API, against a real SQLite file and a real PostgreSQL server (`backend`)."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select
from test_paper_mode import eq1_eq2

from app.db.migrate import UnmigratedDatabase
from app.db.models import Estimate, Spec
from estimator.devices import DEVICES
from estimator.engine import ENGINE_VERSION
from estimator.spec import FamilySpec, canonical_json, spec_hash
from estimator.sweep import Grid

RESIDENT = round(0.38 * 2**30)  # the paper mode's resident buffer (docs/table2.md)
TABLE2 = {"family": "ae", "k": 6, "nt": 4, "batch": 2048, "mode": "paper"}
PROBLEM = "application/problem+json"


def count(app: Any, model: Any) -> int:
    with app.state.sessionmaker() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def fields(response: Any) -> list[str]:
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["instance"]
    return [error["field"] for error in body.get("errors", [])]


def assert_consistent(body: dict[str, Any]) -> None:
    """The totals, the breakdown and the per-layer rows of a response add up."""
    breakdown = body["breakdown"]
    assert sum(breakdown.values()) == body["total_bytes"] == int(body["total_bytes_decimal"])
    assert (
        sum(row["total"] for row in body["layers"]) + breakdown["resident"] == (body["total_bytes"])
    )
    for category in ("weights", "gradients", "optimizer", "activations", "ephemeral"):
        assert sum(row[category] for row in body["layers"]) == breakdown[category], category


def test_table2_estimate_is_stored_once(client: Any, app: Any) -> None:
    first = client.post("/v1/estimates", json=TABLE2)
    assert first.status_code == 200, first.text
    body = first.json()
    # Eqs. (1) + (2) with S = (2^6)^4 and the resident buffer: the paper's 800.9 GiB.
    assert body["total_bytes"] == eq1_eq2(2**24, 4, 4) + RESIDENT == 859_923_299_269
    assert round(body["total_gib"], 1) == 800.9
    assert_consistent(body)
    assert body["engine_version"] == ENGINE_VERSION
    assert body["spec_hash"] == spec_hash(FamilySpec(family="ae", k=6, nt=4, batch=2048))
    assert body["spec"]["hr"] == 2048  # defaults filled in

    # The same spec, spelled differently (defaults given, keys reordered), is the same row.
    again = client.post(
        "/v1/estimates",
        json={"nt": 4, "k": 6, "family": "ae", "ht": 256, "batch": 2048, "mode": "paper"},
    )
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert again.json()["total_bytes"] == body["total_bytes"]
    assert count(app, Spec) == 1
    assert count(app, Estimate) == 1

    read = client.get(f"/v1/estimates/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body

    # Without a mode: the framework mode, a second estimate of the same spec row.
    default = client.post("/v1/estimates", json={"family": "ae", "k": 6, "nt": 4})
    assert default.status_code == 200, default.text
    framework = default.json()
    assert framework["mode"] == "framework" and framework["id"] != body["id"]
    assert_consistent(framework)
    # What TF allocates: Adam's two slots per weight, which the paper leaves out, and more.
    assert framework["total_bytes"] > body["total_bytes"]
    assert count(app, Spec) == 1
    assert count(app, Estimate) == 2


def test_huge_totals_round_trip_exactly(client: Any, app: Any) -> None:
    spec = FamilySpec(family="ae", k=64, nt=10)
    exact = eq1_eq2(2**640, 4, 10) + RESIDENT  # S = (2^64)^10 messages, paper mode
    assert exact > 2**600
    request = {"family": "ae", "k": 64, "nt": 10, "mode": "paper"}
    created = client.post("/v1/estimates", json=request)
    assert created.status_code == 200, created.text
    assert created.json()["total_bytes"] == exact
    assert isinstance(created.json()["total_gib"], float)
    assert_consistent(created.json())
    read = client.get(f"/v1/estimates/{created.json()['id']}").json()
    assert read["total_bytes"] == exact
    assert int(read["total_bytes_decimal"]) == exact
    assert read["breakdown"] == created.json()["breakdown"]
    with app.state.sessionmaker() as session:
        assert session.scalar(select(Estimate.total_bytes)) == str(exact)
        assert json.loads(session.scalar(select(Spec.canonical_json))) == json.loads(
            canonical_json(spec)
        )

    # Beyond float range, GiB comes as a string.
    request = {"family": "ae", "k": 8, "nt": 1024, "mode": "paper"}
    biggest = client.post("/v1/estimates", json=request)
    assert biggest.status_code == 200, biggest.text
    assert biggest.json()["total_bytes"] == eq1_eq2(2**8192, 4, 1024) + RESIDENT
    assert isinstance(biggest.json()["total_gib"], str)


def test_model_spec(client: Any) -> None:
    body = {
        "input_kind": "one_hot",
        "input_size": 16,
        "layers": [
            {"type": "dense", "units": 32, "activation": "relu"},
            {"type": "dense", "units": 16, "activation": "softmax"},
        ],
        "loss": "categorical_crossentropy",
        "batch": 1024,
    }
    response = client.post("/v1/estimates", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["layers"][0]["units"] == 32
    assert len(response.json()["layers"]) >= 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"family": "ae", "k": 0, "nt": 4}, "k"),
        ({"family": "ae", "k": 6, "nt": "four"}, "nt"),
        ({"family": "ae", "k": 6, "nt": 4000}, "k"),
        ({"family": "vae", "k": 6, "nt": 4}, "family"),
        ({"family": "ae", "k": 6, "nt": 4, "colour": "red"}, "colour"),
        ({"family": "ae", "k": 6, "nt": 4, "mode": "guess"}, "mode"),
        ({"family": "ae", "k": 6, "nt": 4, "batch": -1}, "batch"),
        ({"input_kind": "real", "input_size": 3, "layers": [{"type": "dense", "units": 0}]},
         "layers.0.units"),
        ({"input_kind": "real", "input_size": 3, "layers": [{"type": "warp"}]}, "layers.0"),
        ({"input_kind": "index", "input_size": 3, "layers": [{"type": "dense", "units": 2}]},
         "input_size"),
        ({"input_kind": "real", "input_size": 3, "layers": []}, "layers"),
        ({"family": "bae", "k": 2, "nt": 2, "decoder_blocks": 6003}, "decoder_blocks"),
        ({"input_kind": "real", "input_size": 3,
          "layers": [{"type": "dense", "units": 3}] * 1025}, "layers"),
        ([1, 2, 3], ""),
        ("ae", ""),
    ],
)  # fmt: skip
def test_invalid_specs_name_the_field(client: Any, body: Any, field: str) -> None:
    response = client.post("/v1/estimates", json=body)
    assert response.status_code == 422, response.text
    assert field in fields(response)


def test_malformed_and_oversized_bodies(client: Any, settings: Any) -> None:
    bad_json = client.post(
        "/v1/estimates", content=b'{"family": "ae",', headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422
    fields(bad_json)

    huge_digits = b'{"family": "ae", "k": 1' + b"0" * 5000 + b', "nt": 4}'
    response = client.post(
        "/v1/estimates", content=huge_digits, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    fields(response)

    too_big = b'{"family": "ae", "k": 6, "nt": 4, "x": "' + b"y" * settings.max_body_bytes + b'"}'
    response = client.post(
        "/v1/estimates", content=too_big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    fields(response)

    def chunks() -> Any:  # no Content-Length: counted as it streams
        yield b'{"family": "ae", "k": 6, "nt": 4, "x": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    response = client.post(
        "/v1/estimates", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    fields(response)


def test_lookup_errors(client: Any) -> None:
    assert client.get("/v1/estimates/424242").status_code == 404
    fields(client.get("/v1/estimates/424242"))
    for bad in ("0", "abc", str(2**70)):
        response = client.get(f"/v1/estimates/{bad}")
        assert response.status_code == 422, bad
        assert fields(response) == ["estimate_id"]
    response = client.get("/v1/estimates", params={"k": "-1"})
    assert response.status_code == 422 and fields(response) == ["k"]
    response = client.get("/v1/estimates", params={"nt": str(10**30)})
    assert response.status_code == 422 and fields(response) == ["nt"]


def test_search_stored_estimates(client: Any) -> None:
    created = {}
    for family, k, nt in [("ae", 2, 2), ("ae", 2, 4), ("bae", 2, 2), ("ae", 4, 2)]:
        response = client.post("/v1/estimates", json={"family": family, "k": k, "nt": nt})
        assert response.is_success
        created[family, k, nt] = response.json()["total_bytes"]
    assert client.post("/v1/estimates", json={"family": "ae", "k": 2, "nt": 2, "batch": 64})
    items = client.get("/v1/estimates", params={"family": "ae", "k": 2}).json()["items"]
    assert sorted((i["nt"], i["batch"]) for i in items) == [(2, 64), (2, 2048), (4, 2048)]
    items = client.get("/v1/estimates", params={"nt": 2, "family": "bae"}).json()["items"]
    assert [(i["family"], i["k"]) for i in items] == [("bae", 2)]
    assert items[0]["total_bytes"] == created["bae", 2, 2]  # the stored total, listed
    page = client.get("/v1/estimates", params={"limit": 2, "offset": 1}).json()
    assert len(page["items"]) == 2 and page["offset"] == 1


def test_framework_mode(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"family": "bae", "k": 2, "nt": 2, "mode": "framework"}
    response = client.post("/v1/estimates", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "framework"
    assert_consistent(response.json())
    # Without the module: a clear 422 on `mode`, never a 500.
    monkeypatch.setitem(sys.modules, "estimator.framework", None)
    response = client.post("/v1/estimates", json=body | {"k": 3})
    assert response.status_code == 422, response.text
    assert fields(response) == ["mode"]
    assert "framework" in response.json()["detail"]


def test_sweeps(client: Any, settings: Any) -> None:
    grid = {"family": ["ae", "bae"], "k": [2, 4], "nt": [2, 4], "batch": [256, 2048]}
    response = client.post("/v1/sweeps", json=grid)
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    assert len(rows) == response.json()["cells"] == 16
    # A sweep reuses one plan per shape; each cell is what a single estimate of it gives.
    for row in rows:
        cell = {key: row[key] for key in ("family", "k", "nt", "batch")}
        single = client.post("/v1/estimates", json=cell)
        assert single.status_code == 200, single.text
        assert row["total_bytes"] == single.json()["total_bytes"], cell

    too_big = {"k": list(range(1, 101)), "nt": list(range(1, 81)), "batch": list(range(1, 40))}
    assert Grid(**too_big).size > settings.max_sweep_cells
    response = client.post("/v1/sweeps", json=too_big | {"mode": "paper"})
    assert response.status_code == 422
    assert fields(response) == ["k"]
    assert f"at most {settings.max_sweep_cells} are allowed in paper mode" in response.text
    # Each framework cell simulates the allocator: a smaller limit in that mode.
    medium = {"k": list(range(1, 41)), "nt": list(range(1, 31))}
    assert settings.max_framework_sweep_cells < Grid(**medium).size <= settings.max_sweep_cells
    response = client.post("/v1/sweeps", json=medium)
    assert response.status_code == 422 and fields(response) == ["k"]
    assert f"at most {settings.max_framework_sweep_cells} are allowed in framework" in (
        response.text
    )
    assert client.post("/v1/sweeps", json=medium | {"mode": "paper"}).status_code == 200

    response = client.post("/v1/sweeps", json={"k": [64], "nt": [1000]})
    assert response.status_code == 422 and fields(response) == ["k"]
    response = client.post("/v1/sweeps", json={"k": []})
    assert response.status_code == 422 and fields(response) == ["k"]


def test_gate(client: Any) -> None:
    specs = [
        {"name": "ae-k6-nt4", "spec": {"family": "ae", "k": 6, "nt": 4}},
        {"spec": {"family": "bae", "k": 8, "nt": 64}},
    ]
    response = client.post("/v1/gate", json={"device": "a100-80gb", "specs": specs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fits"] is False
    assert body["vram_bytes"] == DEVICES["a100-80gb"].memory_bytes
    assert [(v["name"], v["fits"]) for v in body["verdicts"]] == [
        ("ae-k6-nt4", False),
        ("specs[1]", True),
    ]
    response = client.post("/v1/gate", json={"vram": "2TiB", "specs": specs[:1]})
    assert response.json()["fits"] is True and response.json()["device"] is None

    response = client.post("/v1/gate", json={"specs": specs})
    assert response.status_code == 422 and fields(response) == ["device"]
    response = client.post("/v1/gate", json={"device": "tpu-v9", "specs": specs})
    assert response.status_code == 422 and fields(response) == ["device"]
    response = client.post("/v1/gate", json={"vram": "80 furlongs", "specs": specs})
    assert response.status_code == 422 and fields(response) == ["vram"]
    bad = [{"spec": {"family": "ae", "k": 0, "nt": 4}}]
    response = client.post("/v1/gate", json={"vram": "80GiB", "specs": bad})
    assert response.status_code == 422 and fields(response) == ["specs.0.spec.k"]


def test_max_batch(client: Any) -> None:
    spec = {"family": "bae", "k": 8, "nt": 16}
    response = client.post("/v1/max-batch", json={"device": "h100-80gb", "spec": spec})
    assert response.status_code == 200, response.text
    body = response.json()
    vram = DEVICES["h100-80gb"].memory_bytes
    batch = body["max_batch"]
    assert batch > 0 and body["total_bytes"] <= vram

    def upper(batch: int) -> int:  # the default basis judges upper_bytes
        response = client.post("/v1/estimates", json=spec | {"batch": batch})
        assert response.status_code == 200, response.text
        return int(response.json()["upper_bytes"])

    assert upper(batch) == body["total_bytes"] == body["upper_bytes"] <= vram < upper(batch + 1)
    tiny = client.post("/v1/max-batch", json={"vram": "1MiB", "spec": spec}).json()
    assert tiny["max_batch"] == 0 and tiny["fits"] is False and tiny["total_bytes"] is None


def test_devices(client: Any) -> None:
    response = client.get("/v1/devices")
    assert response.status_code == 200
    assert {d["name"]: d["memory_bytes"] for d in response.json()} == {
        d.name: d.memory_bytes for d in DEVICES.values()
    }


def test_health_and_metrics(client: Any) -> None:
    assert client.get("/health").json() == {
        "status": "ok",
        "database": "ok",
        "engine_version": ENGINE_VERSION,
    }
    client.post("/v1/estimates", json=TABLE2)
    client.post("/v1/estimates", json=TABLE2)
    client.get("/v1/estimates/99999")
    text = client.get("/metrics").text
    assert 'phymem_estimates_served_total{mode="paper",source="computed"} 1.0' in text
    assert 'phymem_estimates_served_total{mode="paper",source="stored"} 1.0' in text
    assert (
        'phymem_http_requests_total{method="POST",route="/v1/estimates",status="200"} 2.0' in text
    )
    assert 'route="/v1/estimates/{estimate_id}",status="404"' in text
    assert "phymem_http_request_duration_seconds_bucket" in text


def test_health_reports_an_unreachable_database(client: Any, app: Any) -> None:
    from sqlalchemy import create_engine

    from app.db.session import make_sessionmaker

    broken = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_pre_ping=False)
    app.state.sessionmaker = make_sessionmaker(broken)
    response = client.get("/health")
    assert response.status_code == 503
    fields(response)


def test_refuses_an_unmigrated_database(empty_db_url: str, tmp_path: Any) -> None:
    from app.core.config import Settings
    from app.main import create_app

    with pytest.raises(UnmigratedDatabase, match="phymem db upgrade"):
        create_app(Settings(database_url=empty_db_url, data_dir=tmp_path))


def test_concurrent_requests_lose_no_writes(client: Any, app: Any) -> None:
    bodies = [{"family": "bae", "k": k, "nt": nt} for k in range(1, 7) for nt in range(1, 6)]
    work = bodies * 3  # each spec asked three times, from different threads at once

    def post(body: dict[str, Any]) -> tuple[int, int, int]:
        response = client.post("/v1/estimates", json=body)
        assert response.status_code == 200, response.text
        return body["k"], body["nt"], response.json()["id"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(post, work))
    ids: dict[tuple[int, int], set[int]] = {}
    for k, nt, estimate_id in results:
        ids.setdefault((k, nt), set()).add(estimate_id)
    assert all(len(found) == 1 for found in ids.values())  # one row per spec, whoever won
    assert count(app, Spec) == len(bodies)
    assert count(app, Estimate) == len(bodies)
