"""POST /v1/estimates' size and FLOPs, and POST /v1/compress (real app, real SQLite)."""

from __future__ import annotations

from typing import Any

import pytest

from estimator.compression import model_bytes, size_table
from estimator.families import csinet, detnet
from estimator.flops import flops_summary
from estimator.layers import resolve

CSINET_4 = csinet("1/4").model_dump()


def test_estimate_reports_params_sizes_and_flops(client: Any) -> None:
    # the families csinet and detnet reach the API as the layer lists they expand to
    response = client.post("/v1/estimates", json=csinet("1/16").model_dump() | {"mode": "paper"})
    assert response.status_code == 200, response.text
    body = response.json()
    layers = resolve(csinet("1/16"))
    assert body["params"] == sum(layer.params for layer in layers)
    assert body["size_bytes"] == size_table(layers)
    assert body["flops"] == flops_summary(layers)["flops"]
    again = client.post("/v1/estimates", json=detnet(layers=50).model_dump() | {"mode": "paper"})
    assert again.json()["params"] == sum(layer.params for layer in resolve(detnet(layers=50)))


def test_compress_estimates_one_recipe(client: Any) -> None:
    body = {"spec": CSINET_4, "prune": 0.5, "quantize": "dynamic"}
    response = client.post("/v1/compress", json=body)
    assert response.status_code == 200, response.text
    layers = resolve(csinet("1/4"))
    sizes = response.json()["size_bytes"]
    assert sizes["bitmap"] == model_bytes(layers, "int8", sparsity=0.5, storage="bitmap")
    assert sizes["dense"] == model_bytes(layers, "int8", sparsity=0.5)
    assert response.json()["fp32_bytes"] == model_bytes(layers)
    clustered = client.post("/v1/compress", json={**body, "prune": 0, "cluster": 32})
    assert clustered.json()["size_bytes"] == {"dense": model_bytes(layers, "int8", clusters=32)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"spec": CSINET_4, "prune": 1.5}, "prune"),
        ({"spec": CSINET_4, "cluster": 1}, "cluster"),
        ({"spec": CSINET_4, "quantize": "int4"}, "quantize"),
        ({"spec": {"family": "ae", "k": 4}}, "nt"),
        ({"prune": 0.5}, "spec"),
    ],
)
def test_compress_refusals_name_the_field(client: Any, body: Any, field: str) -> None:
    response = client.post("/v1/compress", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_compress_a_model_without_weights_reduces_nothing(client: Any) -> None:
    spec = {"input_kind": "real", "input_size": 4, "layers": [{"type": "leaky_relu"}]}
    response = client.post("/v1/compress", json={"spec": spec, "prune": 0.5})
    assert response.status_code == 200, response.text
    assert response.json()["fp32_bytes"] == 0
    assert set(response.json()["reduction"].values()) == {0.0}
