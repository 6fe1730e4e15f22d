"""Time the dashboard's pages (and the JSON each page fetches on load) with 10,000 stored pairs.

    PYTHONPATH=. .venv/bin/python benchmarks/pages_bench.py [--pairs 10000] [--requests 30]

Seeds a fresh SQLite file (a temporary directory): 200 paper-mode estimates, `--pairs`
measurements spread over three devices (one in twenty an OOM) and 1,000 jobs, then asks
each URL `--requests` times through the app in-process (Starlette's TestClient: no network,
so the time is the server's plus a small client overhead) and writes the medians and p95 to
a section of benchmarks/RESULTS.md. Pages aggregate (counts grouped in SQL) or paginate
(50 pairs per request), so no page's cost grows with the number of pairs it does not show.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import write_section

HTML = ["/", "/estimate", "/measured", "/jobs", "/jobs/1", "/training", "/table2"]
JSON = [
    "/v1/overview",
    "/v1/measurements/summary?device=a100-80gb",
    "/v1/measurements?device=a100-80gb&limit=50&offset=0",
    "/v1/measurements?device=a100-80gb&limit=50&offset=3000",
    "/v1/jobs?limit=50&offset=950",
]
DEVICES = ("a100-80gb", "h100-80gb", "cpu")
TARGET_MS = 100.0


def seed(url: str, pairs: int, jobs: int) -> None:
    from sqlalchemy import insert, select

    from app.db.migrate import upgrade
    from app.db.models import Job, Measurement, Spec, utcnow
    from app.db.session import make_engine, make_sessionmaker
    from app.services import estimates
    from estimator.spec import FamilySpec

    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        stored = []
        for family in ("ae", "bae"):
            for k in (2, 3, 4):
                for nt in (1, 2):
                    for batch in range(64, 64 * 18, 64):
                        spec = FamilySpec(family=family, k=k, nt=nt, batch=batch)
                        stored.append(estimates.get_or_create(session, spec, "paper"))
        stored = stored[:200]
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for index in range(pairs):
            estimate = stored[index % len(stored)]
            total = int(estimate.result["total_bytes"])
            oom = index % 20 == 19
            rows.append(
                {
                    "estimate_id": estimate.id,
                    "device": DEVICES[index % len(DEVICES)],
                    "framework_versions": {"tensorflow": "2.21.0"},
                    "measured_peak_bytes": None if oom else str(total + 1000 * (index % 97)),
                    "nvml_peak_bytes": None if index % 3 else total + 2**29,
                    "step_time_s": 0.01,
                    "status": "oom" if oom else "ok",
                    "created_at": now,
                }
            )
        session.execute(insert(Measurement), rows)
        spec_id = session.scalar(select(Spec.id).limit(1))
        statuses = ("succeeded", "failed", "queued", "running", "oom")
        session.execute(
            insert(Job),
            [
                {
                    "kind": "profile",
                    "status": statuses[index % len(statuses)],
                    "spec_id": spec_id,
                    "mode": "paper",
                    "device_class": "cpu",
                    "params": {"steps": 3},
                    "attempts": 1,
                    "max_attempts": 3,
                    "progress": 0.5,
                    "error": "seeded" if index % 5 == 1 else None,
                    "created_at": now,
                }
                for index in range(jobs)
            ],
        )
        session.commit()
    engine.dispose()


def timed(client: Any, url: str, requests: int) -> tuple[float, float, int]:
    client.get(url)  # warm: templates compiled, plans cached, Table 2 computed
    samples = []
    size = 0
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.text[:200])
        size = len(response.content)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'phymem.db'}"
        seed(url, args.pairs, args.jobs)
        app = create_app(Settings(database_url=url, data_dir=Path(folder)))
        lines = [
            "| URL | kind | median ms | p95 ms | bytes |",
            "|---|---|---:|---:|---:|",
        ]
        worst = 0.0
        with TestClient(app) as client:
            for kind, urls in (("page", HTML), ("JSON", JSON)):
                for path in urls:
                    median, p95, size = timed(client, path, args.requests)
                    if kind == "page":
                        worst = max(worst, median)
                    lines.append(f"| `{path}` | {kind} | {median:.1f} | {p95:.1f} | {size} |")
                    print(lines[-1], flush=True)
        verdict = "met" if worst < TARGET_MS else "NOT met"
        body = (
            "`PYTHONPATH=. .venv/bin/python benchmarks/pages_bench.py "
            f"--pairs {args.pairs} --requests {args.requests}`\n\n"
            f"{args.pairs:,} stored pairs over {len(DEVICES)} devices, {args.jobs:,} jobs, "
            "SQLite file; in-process requests (TestClient). Pages aggregate in SQL (counts "
            "grouped by device and status) or paginate (50 pairs or jobs per request); the "
            "charts' data is fetched by the page from the JSON rows below. Slowest page "
            f"median {worst:.1f} ms: target {TARGET_MS:.0f} ms {verdict}.\n\n" + "\n".join(lines)
        )
        print(body)
        if not args.no_write:
            write_section("Dashboard pages (pages_bench.py)", body)


if __name__ == "__main__":
    main()
