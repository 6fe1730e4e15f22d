"""Limits on one request: its body size (413 before the body is read when Content-Length
says so, and as soon as a streamed body passes the limit otherwise), and the cost of the
computation it asks for (a budget, a deadline, and its client still being there)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.exceptions import HTTPException

from app.core.types import ASGIApp, Message, Receive, Scope, Send
from estimator.errors import BudgetExceeded, RateLimited

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
# family). Each request gets a budget of such units, charged before computing (a request
# past it is refused at once with 422 naming the reason), a wall-clock deadline checked
# between evaluations, and is abandoned when its client disconnects.


class ClientDisconnected(Exception):
    """The client went away; the work done for it stops."""


@dataclass
class Budget:
    units: int
    time_limit_s: float
    started: float = field(default_factory=time.monotonic)
    disconnected: threading.Event = field(default_factory=threading.Event)
    spent: int = 0

    def check(self) -> None:
        """Raise if the client left or the deadline passed (called between evaluations)."""
        if self.disconnected.is_set():
            raise ClientDisconnected()
        if time.monotonic() - self.started > self.time_limit_s:
            raise BudgetExceeded(
                "",
                f"the request passed its time limit of {self.time_limit_s:g} s "
                "(PHYMEM_REQUEST_TIME_LIMIT_S); ask for less work per request",
            )

    def charge(self, units: int, field_name: str, what: str) -> None:
        """Spend `units`; refuse (422 on `field_name`) what would pass the budget."""
        self.check()
        if self.spent + units > self.units:
            raise BudgetExceeded(
                field_name,
                f"{what} would cost {units:,} framework-mode units (layers squared per "
                f"evaluation); one request may spend {self.units:,} "
                "(PHYMEM_FRAMEWORK_BUDGET_UNITS): use fewer layers, fewer specs or cells, "
                "or mode 'paper'",
            )
        self.spent += units


_budget: ContextVar[Budget | None] = ContextVar("phymem_budget", default=None)


def current_budget() -> Budget | None:
    return _budget.get()


def check_budget() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.check()


def charge(units: int, field_name: str, what: str) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.charge(units, field_name, what)


# A fixed cost per evaluation (building the step, the allocator's set-up): a family of a
# dozen layers costs about what 32 extra layers' pairs do.
EVALUATION_UNITS = 1024


def framework_units(layers: int, evaluations: int = 1) -> int:
    """Budget units of `evaluations` framework-mode passes over a `layers`-layer model."""
    return (layers * layers + EVALUATION_UNITS) * evaluations


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
        budget = Budget(self.units, self.time_limit_s)
        token = _budget.set(budget)
        queue: asyncio.Queue[Message] = asyncio.Queue()
        body_done = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            # After the body, the only message left is the disconnect: note it, and hand
            # it on to the app should it ask.
            message = await receive()
            if message["type"] == "http.disconnect":
                budget.disconnected.set()
            await queue.put(message)

        async def budget_receive() -> Message:
            nonlocal body_done, watcher
            if body_done:
                return await queue.get()
            message = await receive()
            if message["type"] == "http.disconnect":
                budget.disconnected.set()
            elif message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
                watcher = asyncio.ensure_future(watch())
            return message

        try:
            await self.app(scope, budget_receive, send)
        finally:
            _budget.reset(token)
            if watcher is not None:
                watcher.cancel()


class RateLimiter:
    """At most `per_minute` events per key in any 60 s window (sliding log, in memory:
    per server process)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        """Count one event for `key`; raise RateLimited when past the limit."""
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and now - events[0] >= 60.0:
                events.popleft()
            if len(events) >= self.per_minute:
                retry = max(1, int(60.0 - (now - events[0])) + 1)
                raise RateLimited(
                    f"more than {self.per_minute} job submissions in a minute with this key "
                    f"(PHYMEM_JOBS_PER_MINUTE); retry in {retry} s",
                    retry,
                )
            events.append(now)
