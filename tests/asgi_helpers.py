"""Requests for the cost and streaming tests: framework-mode work of a chosen size, and a
client driven by hand on the ASGI app that sends its body, then goes away."""

from __future__ import annotations

import asyncio
import time
from typing import Any

CONTENT_JSON = (b"content-type", b"application/json")
ACCEPT_NDJSON = (b"accept", b"application/x-ndjson")


def dense_model(layers: int) -> dict[str, Any]:
    """A generic model of `layers` dense layers (framework cost grows with their square)."""
    return {
        "input_kind": "one_hot",
        "input_size": 16,
        "layers": [{"type": "dense", "units": 32, "activation": "relu"}] * (layers - 1)
        + [{"type": "dense", "units": 16, "activation": "softmax"}],
        "loss": "categorical_crossentropy",
    }


def gate_specs(count: int, hr: int = 64) -> list[dict[str, Any]]:
    """Distinct gate items (no plan cached by an earlier request serves them)."""
    return [
        {"spec": {"family": "bae", "k": 4, "nt": 2 + i % 60, "hr": hr, "batch": 64 + i}}
        for i in range(count)
    ]


def _scope(path: str, headers: tuple[tuple[bytes, bytes], ...]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": list(headers), "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip


async def call(
    app: Any, path: str, body: bytes, leave_after_s: float | None, *headers: tuple[bytes, bytes]
) -> tuple[list[dict[str, Any]], float]:
    """POST `body` to `path`; the client disconnects `leave_after_s` after sending it (None:
    stays). The messages the app sent, and the seconds it took (its lifespan must run)."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600 if leave_after_s is None else leave_after_s)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    start = time.perf_counter()
    await app(_scope(path, headers or (CONTENT_JSON,)), receive, send)
    return sent, time.perf_counter() - start


def call_once(
    app: Any, path: str, body: bytes, leave_after_s: float | None, *headers: tuple[bytes, bytes]
) -> tuple[list[dict[str, Any]], float]:
    """`call` within the app's lifespan."""

    async def run() -> tuple[list[dict[str, Any]], float]:
        async with app.router.lifespan_context(app):
            return await call(app, path, body, leave_after_s, *headers)

    return asyncio.run(run())
