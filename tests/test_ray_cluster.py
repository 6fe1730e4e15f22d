"""A two-node Ray cluster on loopback; the dispatcher routes each job by device class.

The head advertises ``device:cpu``, a second node ``device:fake-gpu`` (a deployment's own
class: no GPU asked for, only the custom resource). The worker connects by address
(PHYMEM_RAY_ADDRESS); each job's result records the node that ran it and the resources
Ray granted there.

Teardown signals only the process groups this test started (no `ray stop --force`, which
would stop every Ray process on the machine, other sessions' included).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_helpers import TINY_SPEC, Proc, base_env, free_port, migrate, worker_command

pytest.importorskip("ray")
pytest.importorskip("tensorflow")

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow, pytest.mark.timeout(300)]


def _ray(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args]


def _node_ports() -> list[str]:
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str], Path, list[Proc]]]:
    # A short path: Ray's Unix sockets live under the temp dir (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="phyray-", dir="/tmp"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = base_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    procs: list[Proc] = []
    try:
        head = Proc(
            "ray-head",
            _ray(
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-port={free_port()}",
                "--include-dashboard=false",
                "--num-cpus=1",
                "--resources",
                '{"device:cpu": 2}',
                f"--temp-dir={root / 'head'}",
                *_node_ports(),
            ),
            env,
            root,
        )
        procs.append(head)
        _wait_for(head, "Ray runtime started", 90)
        node = Proc(
            "ray-node",
            _ray(
                f"--address={address}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                "--resources",
                '{"device:fake-gpu": 1}',
                *_node_ports(),
            ),
            env,
            root,
        )
        procs.append(node)
        _wait_for(node, "Ray runtime started", 90)
        yield address, env, root, procs
    finally:
        for proc in reversed(procs):
            proc.stop(grace_s=15)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(proc: Proc, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in proc.output():
            return
        if proc.process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"{proc.name}: no {text!r} after {timeout_s}s:\n{proc.output()[-4000:]}")


def test_jobs_are_routed_to_the_node_of_their_device_class(
    cluster: tuple[str, dict[str, str], Path, list[Proc]],
) -> None:
    from app.db.session import make_engine, make_sessionmaker
    from app.services import jobs
    from estimator.spec import FamilySpec

    address, env, root, procs = cluster
    db_url = f"sqlite:///{root / 'phymem.db'}"
    migrate(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as session:
            ids = {
                device_class: jobs.submit(
                    session,
                    spec=FamilySpec(**TINY_SPEC),
                    device_class=device_class,
                    steps=1,
                    mode="paper",
                ).id
                for device_class in ("cpu", "fake-gpu")
            }
            # A class no node advertises stays queued: nothing claims it.
            stranded = jobs.submit(
                session, spec=FamilySpec(**TINY_SPEC), device_class="a100-80gb", mode="paper"
            ).id

        worker_env = {**env, "PHYMEM_DATABASE_URL": db_url, "PHYMEM_RAY_ADDRESS": address}
        worker_env["PHYMEM_WORKER_POLL_S"] = "0.3"
        worker = Proc("worker", worker_command("--max-jobs", "2"), worker_env, root)
        procs.append(worker)
        try:
            worker.process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker did not finish 2 jobs:\n{worker.output()[-4000:]}"
            ) from None
        assert worker.process.returncode == 0, worker.output()[-4000:]

        with sessions() as session:
            done = {cls: jobs.get(session, job_id) for cls, job_id in ids.items()}
            left = jobs.get(session, stranded)
        for cls, job in done.items():
            assert job.status == "succeeded", (cls, job.status, job.error, worker.output()[-3000:])
        cpu, gpu = done["cpu"].result, done["fake-gpu"].result
        assert cpu is not None and gpu is not None
        assert cpu["assigned_resources"].get("device:cpu") == 1.0
        assert "device:fake-gpu" not in cpu["assigned_resources"]
        assert gpu["assigned_resources"].get("device:fake-gpu") == 1.0
        assert "device:cpu" not in gpu["assigned_resources"]
        assert cpu["node_id"] and gpu["node_id"] and cpu["node_id"] != gpu["node_id"]
        assert gpu["device"] == "fake-gpu" and gpu["tf_device"] == "CPU:0"
        assert left.status == "queued" and left.attempts == 0
    finally:
        engine.dispose()
