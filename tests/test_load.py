"""Load: 64 concurrent clients against a real server on SQLite and on PostgreSQL.

A few seconds of mixed traffic (/health, estimates in both modes, the measurement and
estimate lists): no 5xx, no transport error, no request stalled. The benchmark
(benchmarks/http_bench.py) measures up to 256 connections; this is its short form.
"""

from __future__ import annotations

import pytest

from tests.serving import hammer, serve

CONNECTIONS = 64
SECONDS = 4.0
STALL_S = 10.0  # a request this slow is a stall (the old pool wait was 30 s, then 500)


def test_64_connections_no_5xx_no_stall(db_url: str) -> None:
    with serve(db_url) as base:
        outcome = hammer(base, seconds=SECONDS, connections=CONNECTIONS)
    print(
        f"load: {outcome.total} answers {dict(outcome.statuses)}, slowest {outcome.slowest_s:.2f} s"
    )
    assert outcome.count(lambda s: s == 200) == outcome.total, (
        outcome.statuses,
        outcome.bodies_5xx,
    )
    assert outcome.slowest_s < STALL_S
    assert outcome.total >= CONNECTIONS * 2  # every client was answered, more than once


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
