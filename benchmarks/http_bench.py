"""HTTP under load: GET /health, POST /v1/estimates (paper and framework mode) and
GET /v1/measurements at 1, 16, 64 and 256 connections, on SQLite and on PostgreSQL.

`phymem serve` runs in its own process on a fresh, migrated database (a SQLite file, or a
database on a throwaway PostgreSQL server started from the Debian binaries, or
--postgres-url); a load generator in another process drives it: `wrk` when installed
(apt-get install wrk), else an asyncio httpx client. Reported per row: requests/s, p50 and
p99 latency, and errors (non-2xx answers plus socket errors and timeouts). Target: at 256
connections, p99 under 2 s and no errors. The results replace their section of
benchmarks/RESULTS.md.

    python benchmarks/http_bench.py [--duration 5] [--connections 1,16,64,256]
        [--backends sqlite,postgres] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import write_section  # noqa: E402

TITLE = "HTTP under load: 1 to 256 connections, SQLite and PostgreSQL"
OLD_TITLES = ("HTTP: POST /v1/estimates vs GET /health",)
TABLE2 = {"family": "ae", "k": 6, "nt": 4, "batch": 2048, "mode": "paper"}
FRAMEWORK = {"family": "bae", "k": 8, "nt": 16, "mode": "framework"}
ENDPOINTS: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET /health", "/health", None),
    ("POST /v1/estimates (paper)", "/v1/estimates", TABLE2),
    ("POST /v1/estimates (framework)", "/v1/estimates", FRAMEWORK),
    ("GET /v1/measurements", "/v1/measurements", None),
]
P99_TARGET_MS = 2000.0


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(url: str) -> Iterator[str]:
    """`phymem serve` on a migrated `url`; yields its base URL."""
    env = os.environ | {"PHYMEM_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", f"from app.db.migrate import upgrade; upgrade({url!r})"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-c", "from app.entry import main; main()", "serve",
            "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning",
        ],
        cwd=ROOT, env=env,
    )  # fmt: skip
    import httpx

    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /health within 60 s")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextmanager
def _database(backend: str, postgres_url: str | None) -> Iterator[str]:
    """A fresh database URL of `backend`."""
    if backend == "sqlite":
        workdir = Path(tempfile.mkdtemp(prefix="phymem-http-bench-"))
        try:
            yield f"sqlite:///{workdir / 'phymem.db'}"
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    from tests.conftest import PostgresDatabases, PostgresServer, _find_pg_bin

    server = None
    if postgres_url is None:
        bin_dir = _find_pg_bin()
        if bin_dir is None:
            raise SystemExit(
                "no PostgreSQL binaries: apt-get install postgresql, or --postgres-url"
            )
        server = PostgresServer(bin_dir)
        server.start()
        postgres_url = server.admin_url
    databases = PostgresDatabases(postgres_url)
    try:
        yield databases.create()
    finally:
        databases.drop_all()
        if server is not None:
            server.stop()


_WRK_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, body: dict[str, object] | None, duration: int, connections: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(
                'wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(json.dumps(body))}\n"
            )
    try:
        result = subprocess.run(
            [
                "wrk", "-t", str(min(4, connections)), "-c", str(connections),
                "-d", f"{duration}s", "--timeout", "10s", "--latency", "-s", script.name, url,
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    out = result.stdout
    latency = {int(p): float(v) * _UNITS_MS[u] for p, v, u in _WRK_LATENCY.findall(out)}
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Result(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=latency[50],
        p99_ms=latency[99],
        requests=total,
        errors=(int(bad.group(1)) if bad else 0)
        + (sum(int(n) for n in socket.groups()) if socket else 0),
    )


def _httpx(url: str, body: dict[str, object] | None, duration: int, connections: int) -> Result:
    import httpx

    async def run() -> Result:
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            stop = time.perf_counter() + duration

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < stop:
                    start = time.perf_counter()
                    if body is None:
                        response = await client.get(url)
                    else:
                        response = await client.post(url, json=body)
                    latencies.append(time.perf_counter() - start)
                    errors += response.status_code != 200

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - began
        cuts = statistics.quantiles(latencies, n=100)
        return Result(
            len(latencies) / elapsed, cuts[49] * 1e3, cuts[98] * 1e3, len(latencies), errors
        )

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per row")
    parser.add_argument("--connections", default="1,16,64,256")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-url", help="an admin URL of your own PostgreSQL server")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    backends = args.backends.split(",")

    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    load = _wrk if client == "wrk" else _httpx

    import httpx

    rows: list[tuple[str, int, str, Result]] = []
    for backend in backends:
        with _database(backend, args.postgres_url) as url, _server(url) as base:
            answer = httpx.post(f"{base}/v1/estimates", json=TABLE2, timeout=30).json()
            assert round(answer["total_gib"], 1) == 800.9, answer
            httpx.post(f"{base}/v1/estimates", json=FRAMEWORK, timeout=30).raise_for_status()
            for connections in counts:
                for name, path, payload in ENDPOINTS:
                    result = load(base + path, payload, args.duration, connections)
                    print(f"{backend} c={connections} {name}: {result}", flush=True)
                    rows.append((backend, connections, name, result))

    widest = max(counts)
    at_widest = [r for b, c, _, r in rows if c == widest]
    met = all(r.errors == 0 and r.p99_ms < P99_TARGET_MS for r in at_widest)
    command = "python benchmarks/http_bench.py"
    if args.duration != 5 or args.connections != "1,16,64,256":
        command += f" --duration {args.duration} --connections {args.connections}"
    if args.backends != "sqlite,postgres":
        command += f" --backends {args.backends}"
    table = "\n".join(
        f"| {backend} | {connections} | `{name}` | {r.rps:,.0f} | {r.p50_ms:.1f} "
        f"| {r.p99_ms:.1f} | {r.requests:,} | {r.errors} |"
        for backend, connections, name, r in rows
    )
    body = f"""Command: `{command}`

One `phymem serve` process (default settings: 40 route threads, a database pool of 40 + 4)
on a fresh database; load from `{client}` in another process, {args.duration} s per row.
The paper-mode body is Table 2's `{json.dumps(TABLE2)}` and the framework-mode body
`{json.dumps(FRAMEWORK)}`, each stored on a first request and read back on every later
one; `/health` runs `SELECT 1`; `GET /v1/measurements` lists an empty table. The machine
was shared with other jobs while this ran (2 cores, several processes at once), so the
absolute rates are low and noisy; the errors and tail latencies are the point.

| database | connections | endpoint | requests/s | p50 ms | p99 ms | requests | errors |
| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |
{table}

**At {widest} connections: p99 under {P99_TARGET_MS / 1000:g} s and no errors on every row:
{"met" if met else "NOT met"}.**
"""
    print(body)
    if not args.no_write:
        write_section(TITLE, body)
        _drop_sections(OLD_TITLES)
    return 0 if met else 1


def _drop_sections(titles: tuple[str, ...]) -> None:
    from benchmarks.results import RESULTS

    text = RESULTS.read_text()
    for title in titles:
        pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
        text = pattern.sub("", text)
    RESULTS.write_text(text.rstrip() + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
