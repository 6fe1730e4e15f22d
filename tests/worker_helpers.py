"""Processes for the worker tests: an API server, a `phymem worker`, a Ray node.

Every process starts in its own session (process group), and is stopped by signalling that
group only: SIGTERM, then SIGKILL after a grace period. Nothing else on the machine is
touched (no `ray stop`, which would stop every Ray process of every user session).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.core.statuses import TERMINAL_STATUSES

REPO = Path(__file__).resolve().parent.parent
TINY_SPEC = {"family": "bae", "k": 2, "nt": 2, "ht": 16, "hr": 32, "batch": 64}
# Needs more than 2 GiB of address space: under a 2 GiB cap it runs out of memory.
OOM_SPEC = {"family": "ae", "k": 6, "nt": 2, "batch": 4096}
OOM_LIMIT_BYTES = 2 * 2**30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PHYMEM_RAY_ADDRESS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, grace_s: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the leader stops its own children
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        # Whatever is left in the group (Ray's raylet, workers, agents): SIGKILL.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.log.close()


def phymem(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli_worker", "worker", *args]


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def wait_http(url: str, proc: Proc, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise AssertionError(f"{proc.name} exited:\n{proc.output()[-4000:]}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2).close()
            return
        time.sleep(0.3)
    raise AssertionError(f"{url} not up after {timeout_s}s:\n{proc.output()[-4000:]}")


def wait_job(base: str, job_id: int, procs: list[Proc], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    job: Any = None
    while time.monotonic() < deadline:
        status, _, job = http("GET", f"{base}/v1/jobs/{job_id}")
        assert status == 200, job
        if job["status"] in TERMINAL_STATUSES:
            return job
        for proc in procs:
            if proc.process.poll() is not None:
                raise AssertionError(f"{proc.name} exited:\n{proc.output()[-4000:]}")
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in procs)
    raise AssertionError(f"job {job_id} not done after {timeout_s}s: {job}\n{logs}")


def migrate(url: str) -> None:
    from app.db.migrate import upgrade

    upgrade(url)


class Service:
    """An API server and one `phymem worker` on a SQLite file under `root` (end-to-end tests)."""

    def __init__(self, base: str, root: Path, procs: list[Proc], api_key: str) -> None:
        self.base, self.root, self.procs, self.api_key = base, root, procs, api_key
        self.db_url = f"sqlite:///{root / 'phymem.db'}"

    def submit(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        return http("POST", f"{self.base}/v1/jobs", body, {"X-API-Key": self.api_key})

    def get(self, path: str) -> Any:
        status, _, body = http("GET", f"{self.base}{path}")
        assert status == 200, (path, body)
        return body

    def wait(self, job_id: int, timeout_s: float = 150.0) -> Any:
        return wait_job(self.base, job_id, self.procs, timeout_s)

    def submit_cli(
        self, module: str, *args: str, timeout_s: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`python -m MODULE ARGS --submit --wait --json --url` this service, with its API key
        in PHYMEM_API_KEY unless `env` replaces the environment."""
        command = [sys.executable, "-m", module, *args, "--submit", "--wait", "--json"]
        return subprocess.run(
            [*command, "--url", self.base],
            cwd=REPO,
            env=base_env(PHYMEM_API_KEY=self.api_key) if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@contextlib.contextmanager
def running_service(
    root: Path,
    api_key: str,
    worker_env: dict[str, str] | None = None,
    kind: type[Service] = Service,
) -> Iterator[Service]:
    """Migrate a SQLite file under `root`, start the API and a worker (2 CPUs, polling the
    queue every 0.3 s, `worker_env` on top), yield them as `kind`, stop both after."""
    db_url = f"sqlite:///{root / 'phymem.db'}"
    migrate(db_url)
    port = free_port()
    env = base_env(PHYMEM_DATABASE_URL=db_url, PHYMEM_API_KEY=api_key, PHYMEM_DATA_DIR=str(root))
    procs: list[Proc] = []
    try:
        api = Proc("api", phymem("serve", "--port", str(port), "--no-access-log"), env, root)
        procs.append(api)
        worker = {**env, "PHYMEM_WORKER_POLL_S": "0.3", **(worker_env or {})}
        procs.append(Proc("worker", worker_command("--num-cpus", "2"), worker, root))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", api)
        yield kind(base, root, procs, api_key)
    finally:
        for proc in reversed(procs):
            proc.stop()
