"""A real `uvicorn` serving the app in its own process, and an asyncio load generator.

Used by the load and outage tests: the server and the clients are separate processes
talking HTTP over loopback, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
# (method, path, JSON body or None)
Request = tuple[str, str, Any]
MIXED: list[Request] = [
    ("GET", "/health", None),
    ("POST", "/v1/estimates", {"family": "ae", "k": 6, "nt": 4, "batch": 2048, "mode": "paper"}),
    ("POST", "/v1/estimates", {"family": "bae", "k": 4, "nt": 4, "mode": "framework"}),
    ("GET", "/v1/measurements", None),
    ("GET", "/v1/estimates?limit=20", None),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(
    database_url: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    preload: str | None = None,
    grace_s: float = 30.0,
) -> Iterator[str]:
    """Serve the app on a free loopback port; yields its base URL. `preload`: a module the
    server process imports first (with one worker: the server runs in that process);
    `grace_s`: how long it may take to stop before it is killed."""
    port = free_port()
    environment = os.environ | {
        "PHYMEM_DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    prelude = f"import {preload}; " if preload else ""
    command = [
        sys.executable, "-c", f"{prelude}from app.entry import main; main()",
        "serve", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /health within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@dataclass
class Outcome:
    statuses: Counter[int | str] = field(default_factory=Counter)
    slowest_s: float = 0.0
    # (seconds since start, status) of every answer, for outage timelines
    timeline: list[tuple[float, int | str]] = field(default_factory=list)
    bodies_5xx: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def count(self, predicate: Callable[[int | str], bool]) -> int:
        return sum(n for status, n in self.statuses.items() if predicate(status))


def hammer(
    base: str,
    *,
    seconds: float,
    connections: int,
    requests: list[Request] = MIXED,
    timeout_s: float = 30.0,
    during: Callable[[], None] | None = None,
) -> Outcome:
    """`connections` clients loop over `requests` for `seconds`; `during` runs meanwhile
    in a thread (e.g. stopping the database). Transport errors count by their type."""
    outcome = Outcome()

    async def run() -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout_s) as client:
            began = time.monotonic()
            stop = began + seconds

            async def client_loop(offset: int) -> None:
                index = offset
                while time.monotonic() < stop:
                    method, path, body = requests[index % len(requests)]
                    index += 1
                    start = time.monotonic()
                    status: int | str
                    try:
                        response = await client.request(method, path, json=body)
                        status = response.status_code
                        if status >= 500 and len(outcome.bodies_5xx) < 20:
                            outcome.bodies_5xx.append(f"{status} {path}: {response.text[:300]}")
                    except httpx.HTTPError as error:
                        status = type(error).__name__
                    elapsed = time.monotonic() - start
                    outcome.slowest_s = max(outcome.slowest_s, elapsed)
                    outcome.statuses[status] += 1
                    outcome.timeline.append((time.monotonic() - began, status))

            tasks = [client_loop(i) for i in range(connections)]
            if during is not None:
                tasks.append(asyncio.to_thread(during))
            await asyncio.gather(*tasks)

    asyncio.run(run())
    return outcome
