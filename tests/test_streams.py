"""Large sweeps and gates: past PHYMEM_MAX_BUFFERED_ITEMS in framework mode they are refused
as one body (422 pointing at the stream) and answered as NDJSON when asked: a line per cell
or spec, then a summary; the stream's work stops when its client goes away."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgi_helpers import ACCEPT_NDJSON, CONTENT_JSON, call_once, dense_model, gate_specs
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture
def small_client(db_url: str, tmp_path: Any) -> Any:
    app = create_app(Settings(database_url=db_url, data_dir=tmp_path, max_buffered_items=10))
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_large_gate_is_refused_as_one_body_and_streamed_when_asked(small_client: Any) -> None:
    body = {"vram": "24GiB", "mode": "framework", "specs": gate_specs(12)}
    refused = small_client.post("/v1/gate", json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["errors"][0]
    assert error["field"] == "specs" and "application/x-ndjson" in error["message"]

    streamed = small_client.post("/v1/gate", json=body, headers=NDJSON)
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert [line["index"] for line in lines[:-1]] == list(range(12))
    summary = lines[-1]["summary"]
    assert summary["specs"] == 12 and summary["errors"] == 0
    assert summary["fits"] == all(line["fits"] for line in lines[:-1])
    # Each line is the verdict the buffered gate gives for that spec alone.
    one = small_client.post("/v1/gate", json={**body, "specs": body["specs"][3:4]}).json()
    assert one["verdicts"][0]["total_bytes"] == lines[3]["total_bytes"]
    # Paper mode is cheap: no stream needed.
    paper = small_client.post("/v1/gate", json={**body, "mode": "paper"})
    assert paper.status_code == 200 and len(paper.json()["verdicts"]) == 12


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_large_sweep_streams_its_cells(small_client: Any) -> None:
    grid = {"family": ["ae", "bae"], "k": [2, 4], "nt": [2, 4, 8], "mode": "framework"}
    refused = small_client.post("/v1/sweeps", json=grid)
    assert refused.status_code == 422 and "x-ndjson" in refused.json()["detail"]
    streamed = small_client.post("/v1/sweeps", json=grid, headers=NDJSON)
    assert streamed.status_code == 200, streamed.text
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert lines[-1]["summary"]["cells"] == 12 == len(lines) - 1
    buffered = small_client.post("/v1/sweeps", json={**grid, "nt": [2]}).json()["rows"]
    by_cell = {(r["family"], r["k"], r["nt"]): r["total_bytes"] for r in lines[:-1]}
    for row in buffered:
        assert by_cell[(row["family"], row["k"], row["nt"])] == row["total_bytes"]
    # A spec the engine refuses is an error line of its own; the stream goes on.
    untraced = {
        "input_kind": "real",
        "input_size": 12,
        "layers": [{"type": "detnet_layer", "transmitters": 2, "hidden": 16, "v": 4}],
    }
    specs = [{"spec": untraced}, {"spec": {"family": "bae", "k": 4, "nt": 2}}]
    bad = small_client.post(
        "/v1/gate", json={"vram": "24GiB", "mode": "framework", "specs": specs}, headers=NDJSON
    )
    assert bad.status_code == 200, bad.text
    first, second, last = (json.loads(x) for x in bad.text.splitlines())
    assert first["index"] == 0 and "detnet_layer" in first["error"]["field"]
    assert second["index"] == 1 and second["fits"] is True
    assert last["summary"]["errors"] == 1 and last["summary"]["fits"] is False


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_stream_stops_when_the_client_goes_away(app: Any) -> None:
    specs = [{"spec": {**dense_model(64), "batch": 64 + i}} for i in range(150)]  # seconds
    body = json.dumps({"vram": "80GiB", "mode": "framework", "specs": specs}).encode()
    sent, elapsed = call_once(app, "/v1/gate", body, 0.3, CONTENT_JSON, ACCEPT_NDJSON)
    lines = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[0]["status"] == 200
    assert 0 < lines.count(b"\n") < 150  # some verdicts went out, not all
    assert b'"summary"' not in lines
    assert elapsed < 3.0
