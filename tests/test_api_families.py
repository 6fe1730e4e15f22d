"""CsiNet and DetNet as family specs over the API: the same pydantic spec as the CLI's
(estimator.spec.CsiNetSpec / DetNetSpec), expanded to the layer list the engine counts and
the database stores; bad values are 422s naming the field; framework mode estimates both
(DetNet's mixed precision a 422 naming the field). On SQLite and PostgreSQL (the `client`
fixture)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from estimator.engine import estimate
from estimator.families import csinet, detnet
from estimator.layers import resolve
from estimator.spec import CsiNetSpec, DetNetSpec, canonical_json, spec_hash

CSINET = {"family": "csinet", "gamma": "1/16"}
DETNET = {"family": "detnet", "layers": 50}


def test_estimates_accept_the_families_as_the_cli_does(client: Any) -> None:
    for body, model in ((CSINET, csinet("1/16")), (DETNET, detnet(layers=50))):
        answer = client.post("/v1/estimates", json={**body, "mode": "paper"})
        assert answer.status_code == 200, answer.text
        data = answer.json()
        assert data["total_bytes"] == estimate(model, "paper").total_bytes
        assert data["params"] == sum(r.params for r in resolve(model))
        # stored once: the family is the same record as its layers posted as a list
        assert data["spec_hash"] == spec_hash(model)
        listed = client.post("/v1/estimates", json={**model.model_dump(), "mode": "paper"})
        assert listed.json()["id"] == data["id"]
    command = ["estimate", "--family", "detnet", "--layers", "50", "--mode", "paper", "--json"]
    cli = subprocess.run(
        [sys.executable, "-m", "app.cli", *command], capture_output=True, text=True, timeout=120
    )
    assert json.loads(cli.stdout)["total_bytes"] == estimate(detnet(layers=50), "paper").total_bytes


def test_family_knobs_reach_the_model() -> None:
    small = DetNetSpec(family="detnet", nt=4, nr=8, layers=3, batch=7, precision="mixed")
    assert canonical_json(small.expand()) == canonical_json(
        detnet(4, 8, 3, batch=7).model_copy(update={"precision": "mixed"})
    )
    assert CsiNetSpec(family="csinet", gamma="1/4").expand().batch == 200  # CsiNet's default


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"family": "csinet", "gamma": "1/8"}, "gamma"),
        ({"family": "csinet"}, "gamma"),
        ({"family": "csinet", "gamma": "1/4", "k": 2}, "k"),
        ({"family": "detnet", "layers": 0}, "layers"),
        ({"family": "detnet", "layers": 2000}, "layers"),
        ({"family": "detnet", "nt": 0}, "nt"),
        ({"family": "detnet", "batch": 0}, "batch"),
        ({"family": "detnet", "optimizer": "lion"}, "optimizer"),
    ],
)
def test_bad_family_values_are_422_naming_the_field(
    client: Any, body: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/estimates", json={**body, "mode": "paper"})
    assert answer.status_code == 422, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == [field]
    nested = client.post("/v1/compress", json={"spec": body})
    assert nested.status_code == 422, nested.text
    assert [error["field"] for error in nested.json()["errors"]] == [f"spec.{field}"]


SMALL_DETNET = {"family": "detnet", "nt": 4, "nr": 6, "layers": 3, "batch": 64}


def test_framework_mode_estimates_detnet_with_its_bound(client: Any) -> None:
    """DetNet's training graph has traced framework rules (estimator.detnet_steps): an
    estimate with upper_bytes on every spec-taking endpoint; mixed precision is a 422
    naming `precision`."""
    answer = client.post("/v1/estimates", json={**SMALL_DETNET, "mode": "framework"})
    assert answer.status_code in (200, 201), answer.text
    body = answer.json()
    expected = estimate(detnet(4, 6, 3, batch=64), "framework")
    assert body["total_bytes"] == expected.total_bytes
    assert body["upper_bytes"] == expected.upper_bytes > body["total_bytes"]
    gate = client.post("/v1/gate", json={"specs": [{"spec": SMALL_DETNET}], "vram": "80GiB"})
    assert gate.status_code == 200, gate.text
    assert gate.json()["verdicts"][0]["upper_bytes"] == body["upper_bytes"]
    curve = client.post(
        "/v1/batch-curve", json={"spec": SMALL_DETNET, "batches": [1, 2], "mode": "framework"}
    )
    assert curve.status_code == 200, curve.text
    mixed = detnet(4, 6, 2, batch=8).model_copy(update={"precision": "mixed"}).model_dump()
    refused = client.post("/v1/estimates", json={**mixed, "mode": "framework"})
    assert refused.status_code == 422, refused.text
    assert [error["field"] for error in refused.json()["errors"]] == ["precision"]


def test_framework_mode_estimates_csinet_with_its_bound(client: Any) -> None:
    """CsiNet's layers have traced framework rules (estimator.conv_steps): an estimate, and
    the gate judges it by upper_bytes."""
    answer = client.post("/v1/estimates", json=CSINET)
    assert answer.status_code in (200, 201), answer.text
    body = answer.json()
    assert body["mode"] == "framework"
    assert body["upper_bytes"] >= body["total_bytes"] > 0
    gate = client.post("/v1/gate", json={"specs": [{"spec": CSINET}], "vram": "80GiB"})
    assert gate.status_code == 200, gate.text
    assert gate.json()["verdicts"][0]["upper_bytes"] == body["upper_bytes"]


def test_spec_taking_endpoints_accept_the_families_in_paper_mode(client: Any) -> None:
    total = estimate(detnet(layers=50), "paper").total_bytes
    batch = client.post("/v1/max-batch", json={"spec": DETNET, "vram": "80GiB", "mode": "paper"})
    assert batch.status_code == 200 and batch.json()["max_batch"] > 0, batch.text
    gate = client.post(
        "/v1/gate", json={"specs": [{"spec": DETNET}], "vram": "80GiB", "mode": "paper"}
    )
    assert gate.json()["verdicts"][0]["peak_bytes"] == total
    compress = client.post("/v1/compress", json={"spec": CSINET, "quantize": "dynamic"})
    assert compress.json()["params"] == sum(r.params for r in resolve(csinet("1/16")))
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"CsiNetSpec", "DetNetSpec"} <= set(schema)
    assert schema["CsiNetSpec"]["properties"]["gamma"]["enum"] == ["1/4", "1/16", "1/32", "1/64"]


@pytest.fixture
def settings(db_url: str, tmp_path: Any) -> Any:
    from app.core.config import Settings

    return Settings(database_url=db_url, data_dir=tmp_path, api_key="k")


def test_jobs_queue_a_family_as_its_layer_list(client: Any) -> None:
    body = {"kind": "profile", "spec": {**DETNET, "layers": 2}, "steps": 1, "mode": "paper"}
    queued = client.post("/v1/jobs", json=body, headers={"X-API-Key": "k"})
    assert queued.status_code == 202, queued.text
    assert queued.json()["spec_hash"] == spec_hash(detnet(layers=2))
    framework = client.post(
        "/v1/jobs", json={**body, "mode": "framework"}, headers={"X-API-Key": "k"}
    )
    assert framework.status_code == 202, framework.text  # DetNet is traced in framework mode
