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


DENSE_64_32 = {"input_kind": "real", "input_size": 64, "layers": [{"type": "dense", "units": 32}]}


def test_compress_removes_groups_then_prunes_inside_them(client: Any) -> None:
    body = {"spec": DENSE_64_32, "group_prune": 0.25, "prune": 0.5}
    response = client.post("/v1/compress", json=body)
    assert response.status_code == 200, response.text
    grouped = response.json()["group_pruned"]
    # a 48 x 32 kernel, 768 nonzeros; the 8-byte mask of inputs kept; 32 float32 biases
    rest = 8 + 32 * 4
    assert grouped["size_bytes"] == {
        "dense": 1536 * 4 + rest,
        "sparse": 768 * 4 + 33 * 2 + 768 + rest,
        "bitmap": 768 * 4 + 192 + rest,
    }
    assert (grouped["macs"], grouped["macs_nonzero"]) == (1536, 768)
    assert response.json()["size_bytes"]["bitmap"] == 1024 * 4 + 256 + 32 * 4  # no groups cut


@pytest.mark.parametrize(
    ("recipe", "field"),
    [
        ({"group_prune": 0.5, "prune": 1.0}, "prune"),
        ({"group_prune": 1.0, "prune": 0.5}, "group_prune"),
        ({"group_prune": -0.1, "prune": 0.5}, "group_prune"),
        ({"group_prune": "half", "prune": 0.5}, "group_prune"),
    ],
)
def test_compress_group_and_element_refusals_name_the_field(
    client: Any, recipe: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/compress", json={"spec": DENSE_64_32, **recipe})
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field], response.text


def test_compress_a_model_without_weights_reduces_nothing(client: Any) -> None:
    spec = {"input_kind": "real", "input_size": 4, "layers": [{"type": "leaky_relu"}]}
    response = client.post("/v1/compress", json={"spec": spec, "prune": 0.5})
    assert response.status_code == 200, response.text
    assert response.json()["fp32_bytes"] == 0
    assert set(response.json()["reduction"].values()) == {0.0}
