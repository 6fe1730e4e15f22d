"""Load: 256 concurrent clients against a real server on SQLite and on PostgreSQL.

A few seconds of mixed traffic (/health, estimates in both modes, framework estimates of
specs no earlier request computed, the measurement and estimate lists): no 5xx, no
transport error, no request stalled. The benchmark (benchmarks/http_bench.py) measures
1 to 256 connections at length; this is its short form. The old bug (each request held its
pooled connection across computation and response building, 5 + 10 connections for 40
threads, a 30 s wait then 500) stalled at 64 clients; `test_the_load_test_fails_on_...`
shows this test catches it.
"""

from __future__ import annotations

import httpx
import pytest

from tests.serving import MIXED, Outcome, Request, hammer, serve

CONNECTIONS = 256
SECONDS = 3.0
STALL_S = 10.0  # a request this slow is a stall (the old pool wait was 30 s, then 500)
# Framework estimates that compute and store (the peak moves with the batch: each batch is
# a plan and a spec of its own), interleaved with the cheap mixed traffic.
FRESH: list[Request] = [
    ("POST", "/v1/estimates", {"family": "bae", "k": 4, "nt": 4, "batch": 64 + i})
    for i in range(4096)
]
TRAFFIC: list[Request] = [r for fresh in FRESH for r in (fresh, *MIXED)]


def _healthy(outcome: Outcome) -> bool:
    return (
        outcome.count(lambda s: s == 200) == outcome.total
        and outcome.slowest_s < STALL_S
        and outcome.total >= CONNECTIONS  # every client was answered
    )


def _warm(base: str) -> None:
    """One estimate first: the engine's version is hashed once per process, on first use."""
    httpx.post(f"{base}/v1/estimates", json=FRESH[-1][2], timeout=60).raise_for_status()


def test_256_connections_no_5xx_no_stall(db_url: str) -> None:
    with serve(db_url) as base:
        _warm(base)
        outcome = hammer(
            base, seconds=SECONDS, connections=CONNECTIONS, requests=TRAFFIC, timeout_s=STALL_S
        )
    print(
        f"load: {outcome.total} answers {dict(outcome.statuses)}, slowest {outcome.slowest_s:.2f} s"
    )
    assert _healthy(outcome), (outcome.statuses, outcome.slowest_s, outcome.bodies_5xx)


@pytest.mark.parametrize("backend", ["postgres"])
def test_several_workers_on_postgres(db_url: str) -> None:
    """`phymem serve --workers 2` on PostgreSQL: both processes share the database."""
    with serve(db_url, workers=2) as base:
        outcome = hammer(base, seconds=2.0, connections=32)
    assert outcome.count(lambda s: s == 200) == outcome.total, (
        outcome.statuses,
        outcome.bodies_5xx,
    )
    assert outcome.total >= 64


# The old pool: 5 + 10 connections, a 30 s wait (the threads stay at 40).
OLD_POOL = {"PHYMEM_DB_POOL_SIZE": "5", "PHYMEM_DB_MAX_OVERFLOW": "10"}
OLD_POOL["PHYMEM_DB_POOL_TIMEOUT_S"] = "30"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_load_test_fails_on_the_old_connection_handling(db_url: str) -> None:
    """The same load against the old behaviour (tests/old_connection_hold.py and the old
    pool) is not healthy: every client times out."""
    with serve(db_url, env=OLD_POOL, preload="tests.old_connection_hold", grace_s=1) as base:
        _warm(base)
        old = hammer(
            base, seconds=SECONDS, connections=CONNECTIONS, requests=TRAFFIC, timeout_s=STALL_S
        )
    print(f"old: {old.total} answers {dict(old.statuses)}, slowest {old.slowest_s:.2f} s")
    assert not _healthy(old), (old.statuses, old.slowest_s)
