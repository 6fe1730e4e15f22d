"""Limits on one request: its body size (413 before the body is read when Content-Length
says so, and as soon as a streamed body passes the limit otherwise), and the cost of the
computation it asks for (a budget, a deadline, and its client still being there)."""

from __future__ import annotations

import asyncio
import json
import threading

from starlette.exceptions import HTTPException

from app.core.types import ASGIApp, Message, Receive, Scope, Send
from estimator.budget import Budget, reset_budget, set_budget
from estimator.budget import current as current_budget
from estimator.errors import Cancelled

PROBLEM_JSON = b"application/problem+json"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def _reject(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large" if status == 413 else "Bad Request",
                "status": status,
                "detail": detail,
                "instance": scope.get("path"),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.strip().isdigit():
                    await self._reject(scope, send, 400, "invalid Content-Length header")
                    return
                if int(value) > self.limit:
                    await self._reject(
                        scope, send, 413, f"request body larger than {self.limit} bytes"
                    )
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)  # FastAPI passes HTTPExceptions through
            return message

        await self.app(scope, limited_receive, send)


# --- The cost of one request ---------------------------------------------------------------
#
# Framework-mode estimates replay the allocator over every layer pair: their cost grows
# with the square of the layer count (about 4 s for one 1024-layer model here, 5 ms for a
# family). Each request gets an estimator.budget.Budget: the engine charges it as it runs
# (allocator events replayed), and it stops the work midway, with 422 naming the reason,
# past its units or its wall-clock deadline, and (499) when its client disconnects.

ClientDisconnected = Cancelled  # the client went away; the work done for it stops


def check_budget() -> None:
    """Between evaluations: raise if the client left or the deadline passed."""
    budget = current_budget()
    if budget is not None:
        budget.check()


def request_budget(units: int, time_limit_s: float, disconnected: threading.Event) -> Budget:
    return Budget(
        units=units,
        time_limit_s=time_limit_s,
        cancelled=disconnected.is_set,
        units_hint=" (PHYMEM_FRAMEWORK_BUDGET_UNITS)",
        time_hint=" (PHYMEM_REQUEST_TIME_LIMIT_S)",
    )


class RequestBudgetMiddleware:
    """Gives each HTTP request a Budget (a context variable the services read, carried
    into the route's thread), and marks it disconnected when the client leaves."""

    def __init__(self, app: ASGIApp, units: int, time_limit_s: float) -> None:
        self.app = app
        self.units = units
        self.time_limit_s = time_limit_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        disconnected = threading.Event()
        token = set_budget(request_budget(self.units, self.time_limit_s, disconnected))
        queue: asyncio.Queue[Message] = asyncio.Queue()
        body_done = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            # After the body, the only message left is the disconnect: note it, and hand
            # it on to the app should it ask.
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
            await queue.put(message)

        async def budget_receive() -> Message:
            nonlocal body_done, watcher
            if body_done:
                return await queue.get()
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
            elif message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
                watcher = asyncio.ensure_future(watch())
            return message

        try:
            await self.app(scope, budget_receive, send)
        finally:
            reset_budget(token)
            if watcher is not None:
                watcher.cancel()
