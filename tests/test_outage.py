"""A database outage under load: a real PostgreSQL stopped and restarted while 32 clients
hit a real server. Every answer while it is down is 503 problem+json with Retry-After
(never 500, never a dropped connection), and the service is back within 5 s of the
database."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from app.db.migrate import upgrade
from tests.conftest import PostgresDatabases, PostgresServer, _find_pg_bin, _unavailable
from tests.serving import hammer, serve

RECOVERY_S = 5.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (the shared one must not be stopped)."""
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        _unavailable("no PostgreSQL server binaries (apt-get install postgresql)")
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except Exception as error:  # pragma: no cover - depends on the machine
        server.stop()
        _unavailable(f"could not start PostgreSQL: {error}")
    yield server
    server.stop()


@pytest.mark.postgres
def test_postgres_outage_is_503_and_recovers(own_postgres: PostgresServer) -> None:
    url = PostgresDatabases(own_postgres.admin_url).create()
    upgrade(url)
    marks: dict[str, float] = {}

    with serve(url) as base:
        began = time.monotonic()

        def outage() -> None:
            time.sleep(2.0)
            own_postgres.halt()
            marks["down"] = time.monotonic() - began
            down = httpx.get(f"{base}/health", timeout=10)
            marks["health_status"] = down.status_code
            marks["health_body"] = down.json().get("dependency") == "database"
            marks["retry_after"] = float(down.headers.get("Retry-After", "nan"))
            time.sleep(3.0)
            own_postgres.resume()
            marks["up"] = time.monotonic() - began

        outcome = hammer(base, seconds=12.0, connections=32, during=outage, timeout_s=20)

    statuses = dict(outcome.statuses)
    print(f"outage: {statuses}, marks {marks}")
    assert marks["health_status"] == 503 and marks["health_body"] and marks["retry_after"] >= 1
    assert outcome.count(lambda s: s == 503) > 0, statuses  # the outage was seen
    assert set(statuses) <= {200, 503}, (statuses, outcome.bodies_5xx)  # no 500, no drops
    after = [status for at, status in outcome.timeline if at > marks["up"] + RECOVERY_S]
    assert after and all(status == 200 for status in after), statuses
