"""The per-key job rate limit is counted in the database: two server processes
(`phymem serve --workers 2`) together accept no more than PHYMEM_JOBS_PER_MINUTE."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving import serve

KEY = "rate-limit-test-key"
PER_MINUTE = 3
JOB = {"spec": {"family": "ae", "k": 2, "nt": 2}, "steps": 1}


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_two_workers_share_one_count(db_url: str) -> None:
    env = {"PHYMEM_API_KEY": KEY, "PHYMEM_JOBS_PER_MINUTE": str(PER_MINUTE)}
    with serve(db_url, workers=2, env=env) as base:

        def submit(key: str) -> int:
            # A connection of its own each: the two processes share the listening socket.
            response = httpx.post(
                f"{base}/v1/jobs", json=JOB, headers={"X-API-Key": key}, timeout=30
            )
            return response.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(submit, [KEY] * 12))
    assert sorted(statuses) == [202] * PER_MINUTE + [429] * (12 - PER_MINUTE), statuses
