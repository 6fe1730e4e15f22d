"""End to end: a real API server and a real `phymem worker` (embedded Ray) on a SQLite file.

Jobs go in over HTTP, the worker claims them from the database, runs each as a Ray task in
a fresh process (the measurement in a fresh child of that), and the estimated-vs-measured
pair comes back from GET /v1/measurements.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from worker_helpers import (
    OOM_LIMIT_BYTES,
    OOM_SPEC,
    TINY_SPEC,
    Proc,
    Service,
    base_env,
    free_port,
    http,
    migrate,
    phymem,
    running_service,
    wait_http,
)

pytest.importorskip("ray")
pytest.importorskip("tensorflow")

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow, pytest.mark.timeout(300)]
API_KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    faults = {"PHYMEM_WORKER_FAULT_INJECTION": "1", "PHYMEM_WORKER_MAX_RETRIES": "2"}
    with running_service(tmp_path_factory.mktemp("e2e"), API_KEY, faults) as running:
        yield running


def test_profile_job_end_to_end(service: Service) -> None:
    body = {"kind": "profile", "spec": TINY_SPEC, "device_class": "cpu", "steps": 1}
    status, headers, job = service.submit(body)
    assert status == 202, job
    location = headers.get("location") or headers.get("Location")
    assert location == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"

    done = service.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0 and done["attempts"] == 1
    result = done["result"]
    assert result["status"] == "ok"
    assert result["device"] == "cpu" and result["tf_device"] == "CPU:0"
    assert result["measured_bytes"] > 0 and result["estimate_bytes"] > 0
    assert result["estimate_mode"] in ("framework", "paper")
    assert result["framework_versions"]["tensorflow"]
    assert result["assigned_resources"].get("device:cpu") == 1.0
    assert result["node_id"]

    status, _, listing = http(
        "GET", f"{service.base}/v1/measurements?family=bae&k=2&nt=2&status=ok"
    )
    assert status == 200, listing
    pairs = [item for item in listing["items"] if item["job_id"] == job["id"]]
    assert len(pairs) == 1, listing
    pair = pairs[0]
    assert pair["id"] == result["measurement_id"]
    assert pair["measured_bytes"] == result["measured_bytes"]
    assert pair["estimate_bytes"] == result["estimate_bytes"]
    assert pair["error_pct"] == pytest.approx(result["error_pct"], abs=1e-3)
    assert pair["device"] == "cpu" and pair["status"] == "ok"
    assert pair["framework_versions"]["tensorflow"] == result["framework_versions"]["tensorflow"]
    assert pair["step_time_s"] is not None and pair["step_time_s"] > 0

    # Filters narrow the list.
    _, _, other = http("GET", f"{service.base}/v1/measurements?family=bae&k=3")
    assert all(item["job_id"] != job["id"] for item in other["items"])


def test_oom_config_ends_as_oom(service: Service) -> None:
    body = {
        "spec": OOM_SPEC,
        "steps": 1,
        "memory_limit_bytes": OOM_LIMIT_BYTES,
    }
    status, _, job = service.submit(body)
    assert status == 202, job
    done = service.wait(job["id"])
    assert done["status"] == "oom", done
    assert done["attempts"] == 1
    assert done["result"]["status"] == "oom"
    assert done["result"]["measured_bytes"] is None

    _, _, listing = http("GET", f"{service.base}/v1/measurements?status=oom&family=ae&k=6&nt=2")
    pairs = [item for item in listing["items"] if item["job_id"] == job["id"]]
    assert len(pairs) == 1, listing
    assert pairs[0]["measured_bytes"] is None and pairs[0]["error_pct"] is None
    assert pairs[0]["estimate_bytes"] > 0


def test_job_whose_process_always_dies_fails_after_bounded_retries(service: Service) -> None:
    # A fault the API does not accept: injected straight into the queue, honoured only by a
    # worker started with PHYMEM_WORKER_FAULT_INJECTION=1.
    from app.db.session import make_engine, make_sessionmaker
    from app.services import jobs
    from estimator.spec import FamilySpec

    engine = make_engine(service.db_url)
    try:
        with make_sessionmaker(engine)() as session:
            job = jobs.submit(
                session, spec=FamilySpec(**TINY_SPEC), steps=1, mode="paper", fault="kill-worker"
            )
            job_id = job.id
    finally:
        engine.dispose()

    done = service.wait(job_id, timeout_s=90)
    assert done["status"] == "failed", done
    assert done["attempts"] == 3  # claimed once, run 3 times: Ray's 2 retries are counted
    assert "died on each of 3 tries" in done["error"], done["error"]
    assert "fault" not in done["params"]
    _, _, listing = http("GET", f"{service.base}/v1/measurements?job_id={job_id}")
    assert listing["items"] == []
    # The worker survived and still serves the queue.
    assert all(proc.process.poll() is None for proc in service.procs)


def test_profile_submit_waits_for_the_workers_result(service: Service) -> None:
    import json

    args = ["profile", "--family", "bae", "--k", "2", "--nt", "2", "--ht", "16", "--hr", "32"]
    args += ["--batch", "32", "--steps", "1"]
    done = service.submit_cli("app.cli_worker", *args, timeout_s=150)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok" and result["job_status"] == "succeeded"
    assert result["measured_bytes"] > 0 and result["estimate_bytes"] > 0
    assert result["device"] == "cpu" and "error_pct" in result

    wrong = service.submit_cli(
        "app.cli_worker", *args, "--api-key", "wrong", timeout_s=60, env=base_env()
    )
    assert wrong.returncode == 2 and "HTTP 401" in wrong.stderr, wrong.stderr


def test_serve_with_worker_starts_and_stops_one_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import signal
    import time

    root = tmp_path_factory.mktemp("with-worker")
    db_url = f"sqlite:///{root / 'phymem.db'}"
    migrate(db_url)
    port = free_port()
    env = base_env(PHYMEM_DATABASE_URL=db_url, PHYMEM_DATA_DIR=str(root))
    serve = Proc("serve", phymem("serve", "--port", str(port), "--with-worker"), env, root)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", serve)
        deadline = time.monotonic() + 90
        while "dispatching" not in serve.output():
            assert time.monotonic() < deadline, serve.output()[-4000:]
            assert serve.process.poll() is None, serve.output()[-4000:]
            time.sleep(0.5)
        serve.process.send_signal(signal.SIGTERM)
        serve.process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while "phymem worker: stopped" not in serve.output():
            assert time.monotonic() < deadline, serve.output()[-4000:]
            time.sleep(0.5)
    finally:
        serve.stop()
