"""The CLI's side of the job queue: submit a job to the service and follow it.

`phymem profile --submit` and `phymem train --submit` both post to `/v1/jobs`, print the
job's URL or wait for it. Transport and HTTP errors become `UsageError`s naming the URL,
so the command reports one line and exits 2. httpx is imported only when a job is sent.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from app.core.statuses import TERMINAL_STATUSES
from app.specio import UsageError

if TYPE_CHECKING:
    import httpx


class Service:
    """One HTTP session with the service at `base`."""

    def __init__(self, client: httpx.Client, base: str, api_key: str | None) -> None:
        self.client, self.base = client, base
        self.headers = {"X-API-Key": api_key} if api_key else {}

    def submit(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """POST the job; its JSON and its location (path of `GET /v1/jobs/{id}`)."""
        response = self.client.post("/v1/jobs", json=body, headers=self.headers)
        if response.status_code != 202:
            detail = response.text
            with contextlib.suppress(ValueError):
                detail = response.json().get("detail") or detail
            raise UsageError(f"{self.base}/v1/jobs: HTTP {response.status_code}: {detail}")
        job: dict[str, Any] = response.json()
        return job, response.headers.get("location", f"/v1/jobs/{job['id']}")

    def start(
        self, body: dict[str, Any], *, wait: bool, as_json: bool, timeout_s: float
    ) -> tuple[dict[str, Any], str, float] | None:
        """Submit the job. Without `wait`, print where it is and return None; else its JSON,
        its location and the monotonic deadline for waiting on it."""
        job, location = self.submit(body)
        if wait:
            return job, location, time.monotonic() + timeout_s
        if as_json:
            typer.echo(json.dumps({"job_id": job["id"], "url": self.base + location}))
        else:
            typer.echo(f"submitted job {job['id']}: {self.base}{location}")
        return None

    def get(self, path: str) -> dict[str, Any]:
        found: dict[str, Any] = self.client.get(path).raise_for_status().json()
        return found


@contextlib.contextmanager
def service(url: str, api_key: str | None) -> Iterator[Service]:
    import httpx

    base = url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=30.0) as client:
            yield Service(client, base, api_key)
    except httpx.HTTPError as error:
        raise UsageError(f"{base}: {type(error).__name__}: {error}") from None


def finished(job: dict[str, Any], deadline: float, timeout_s: float) -> bool:
    """True once the job is in a terminal state; UsageError once `deadline` has passed."""
    if time.monotonic() > deadline:
        raise UsageError(f"job {job['id']} still {job['status']} after {timeout_s}s")
    return job["status"] in TERMINAL_STATUSES
