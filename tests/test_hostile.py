"""A hostile corpus against the app on SQLite and PostgreSQL: NUL and control characters in
every string field, huge and non-finite numbers, deep nesting, 100k-layer specs, truncated
bodies, duplicate keys, repeated query parameters.

Every answer: no 5xx; an error is problem+json, and a 422 names the field at fault; none
takes a second. PHYMEM_HOSTILE_REPEAT=N sends the corpus N times (the README's 10,000-request
run uses it with the schemathesis modules' PHYMEM_SCHEMATHESIS_EXAMPLES).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"
API_KEY = "hostile-test-key"
REPEAT = int(os.environ.get("PHYMEM_HOSTILE_REPEAT", "1"))
SLOW_S = 1.0
CONTROL = ["\x00", "\x01", "\x1b", "\x7f", "a\x00b", "\n"]
FAMILY = {"family": "ae", "k": 2, "nt": 2, "mode": "paper"}
SPEC = {"family": "ae", "k": 2, "nt": 2}  # inside gate and max-batch bodies (no mode)
MODEL = {
    "input_kind": "one_hot",
    "input_size": 4,
    "layers": [
        {"type": "dense", "units": 8, "activation": "relu"},
        {"type": "gaussian_noise", "stddev": 0.1},
        {"type": "dense", "units": 4, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "mode": "paper",
}
# (method, path, body: JSON value | raw bytes | None, field the 422 must name or None)
Case = tuple[str, str, Any, str | None]


def _cases() -> Iterator[Case]:
    for bad in CONTROL:
        yield "POST", "/v1/estimates", {**FAMILY, "device": f"a100{bad}"}, "device"
        yield "POST", "/v1/gate", {"device": bad, "specs": [{"spec": SPEC}]}, "device"
        yield "POST", "/v1/gate", {"vram": f"80GiB{bad}", "specs": [{"spec": SPEC}]}, "vram"
        yield (
            "POST", "/v1/gate", {"vram": "80GiB", "specs": [{"name": bad, "spec": SPEC}]},
            "specs.0.name",
        )  # fmt: skip
        yield "POST", "/v1/max-batch", {"device": f"h100{bad}", "spec": SPEC}, "device"
        layers = [{**MODEL["layers"][0], "name": f"x{bad}"}, *MODEL["layers"][1:]]
        yield "POST", "/v1/estimates", {**MODEL, "layers": layers}, "layers.0.name"
        yield "GET", f"/v1/measurements?device=cpu{quote(bad)}", None, "device"
        yield "GET", f"/v1/measurements/summary?device=cpu{quote(bad)}", None, "device"
        yield "GET", f"/v1/devices/a100{quote(bad)}/calibration", None, "name"
        yield "POST", "/v1/estimates", {**FAMILY, "family": f"ae{bad}"}, "family"
        yield "POST", "/v1/estimates", {**FAMILY, "mode": f"paper{bad}"}, "mode"
    for number in ("1e400", "-1e400", "Infinity", "-Infinity", "NaN", "1" + "0" * 5000):
        # Beyond 4300 digits the JSON parser itself refuses the body: a 400 naming no field.
        field = None if len(number) > 4300 else "k"
        yield "POST", "/v1/estimates", f'{{"family":"ae","k":{number},"nt":2}}'.encode(), field
        noise = json.dumps(MODEL).replace('"stddev": 0.1', f'"stddev": {number}').encode()
        yield "POST", "/v1/estimates", noise, field and "layers.1.stddev"
    for stddev in (1.5, 0, -0.1):
        layers = [MODEL["layers"][0], {"type": "gaussian_noise", "stddev": stddev}]
        yield "POST", "/v1/estimates", {**MODEL, "layers": layers}, "layers.1.stddev"
    for k in (10**30, -(10**30), 2**64):
        yield "POST", "/v1/estimates", {**FAMILY, "k": k}, "k"
        yield "POST", "/v1/max-batch", {"vram": "80GiB", "spec": {**SPEC, "nt": k}}, "spec.nt"
    yield "POST", "/v1/max-batch", {"vram": "1" + "0" * 400, "spec": SPEC}, None
    yield "POST", "/v1/gate", {"vram": "-5GiB", "specs": [{"spec": SPEC}]}, "vram"
    nested = "[" * 10_000 + "1" + "]" * 10_000
    yield "POST", "/v1/estimates", f'{{"family":"ae","nt":2,"k":{nested}}}'.encode(), None
    yield "POST", "/v1/estimates", b'{"family":"ae","k":' + b"[" * 100_000, None
    huge_layers = [{"type": "dense", "units": 2}] * 100_000
    yield "POST", "/v1/estimates", {**MODEL, "layers": huge_layers}, None  # 413: body size
    yield "POST", "/v1/estimates", {**MODEL, "layers": huge_layers[:1025]}, "layers"
    layer_without_type = [{"units": 4}]
    yield "POST", "/v1/estimates", {**MODEL, "layers": layer_without_type}, "layers.0"
    body = json.dumps(FAMILY).encode()
    for cut in (1, len(body) // 2, len(body) - 1):
        yield "POST", "/v1/estimates", body[:cut], None
    yield "POST", "/v1/estimates", b'{"family":"ae","k":2,"k":0,"nt":2}', "k"
    yield "POST", "/v1/estimates", b"\xff\xfe not utf-8", None
    yield "GET", "/v1/estimates?limit=5&limit=999999", None, "limit"
    yield "GET", "/v1/estimates?k=2&k=x", None, "k"
    yield "GET", "/v1/measurements?device=a&device=b&limit=0", None, "limit"
    yield "GET", "/v1/estimates/99999999999999999999", None, "estimate_id"
    yield "GET", "/v1/jobs?status=%00", None, "status"
    job = {"spec": SPEC, "memory_limit_bytes": 10**30}
    yield "POST", "/v1/jobs", job, "memory_limit_bytes"
    yield "POST", "/v1/jobs", {"spec": SPEC, "device_class": "cpu\x00"}, "device_class"
    yield "POST", "/v1/sweeps", {"family": ["ae"], "k": [2] * 5000, "nt": [2]}, None


@pytest.fixture
def settings(db_url: str, tmp_path: Any) -> Any:
    from app.core.config import Settings

    return Settings(database_url=db_url, data_dir=tmp_path, api_key=API_KEY, jobs_per_minute=10_000)


def test_hostile_corpus(app: Any) -> None:
    cases = list(_cases()) * REPEAT
    slowest = (0.0, "")
    failures: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path, body, field in cases:
            kwargs: dict[str, Any] = {"headers": {"X-API-Key": API_KEY}}
            if isinstance(body, bytes):
                kwargs["content"] = body
                kwargs["headers"]["Content-Type"] = "application/json"
            elif body is not None:
                kwargs["json"] = body
            start = time.perf_counter()
            response = client.request(method, path, **kwargs)
            elapsed = time.perf_counter() - start
            slowest = max(slowest, (elapsed, f"{method} {path}"))
            where = f"{method} {path} {str(body)[:80]!r}: {response.status_code}"
            if response.status_code >= 500 or response.status_code < 400:
                failures.append(f"{where} {response.text[:200]}")
                continue
            if not response.headers["content-type"].startswith(PROBLEM):
                failures.append(f"{where} not problem+json")
                continue
            named = [error["field"] for error in response.json().get("errors") or []]
            if field is not None and (response.status_code != 422 or field not in named):
                failures.append(f"{where} names {named}, expected {field!r}")
    print(f"hostile corpus: {len(cases)} requests, slowest {slowest[0]:.3f} s ({slowest[1]})")
    assert not failures, "\n".join(failures)
    assert slowest[0] < SLOW_S, slowest
