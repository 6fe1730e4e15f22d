"""`phymem worker`: claim queued jobs from the database, run each as a Ray task, write back.

One loop, one thread:

1. put jobs whose lease expired back in the queue (or fail them when out of attempts);
2. renew the leases of the jobs in flight (a job cancelled or re-leased meanwhile is
   cancelled in Ray);
3. collect finished Ray tasks and write each outcome (a measurement row with the estimate
   it pairs with, and the job's status: succeeded, oom or failed);
4. claim as many queued jobs as there is room for (`concurrency`), only of the device
   classes the Ray cluster advertises, and submit them.

Ray: embedded (``ray.init()``, single node, no dashboard) unless an address is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import make_engine, make_sessionmaker
from app.services import queue
from app.worker import profile, resources, training
from app.worker.task import FAULTS, ExecutionLog, remote_function

log = logging.getLogger("phymem.worker")
FAULT_INJECTION_ENV = "PHYMEM_WORKER_FAULT_INJECTION"


@dataclass
class WorkerConfig:
    database_url: str
    ray_address: str | None = None
    lease_s: float = 60.0
    poll_s: float = 1.0
    concurrency: int = 2
    max_retries: int = 2
    device_class: str | None = None  # GPUs of this machine, advertised by an embedded Ray
    num_cpus: int | None = None  # embedded Ray: CPUs (default: all)
    max_jobs: int | None = None  # stop after this many jobs finish (tests, batch runs)
    idle_exit_s: float | None = None  # stop after the queue was empty this long
    parent_pid: int | None = None  # stop when this process is gone (serve --with-worker)
    fault_injection: bool = field(
        default_factory=lambda: os.environ.get(FAULT_INJECTION_ENV, "") == "1"
    )


@dataclass
class InFlight:
    job: queue.ClaimedJob
    ref: Any
    submitted: float


def _exception_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text[:4000]


class Dispatcher:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.engine = make_engine(config.database_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.inflight: dict[Any, InFlight] = {}
        self.stop_event = threading.Event()
        self.finished = 0
        self._remote: Any = None
        self._executions: Any = None
        self._last_renew = 0.0
        self._last_requeue = 0.0
        self._idle_since: float | None = None
        self._owns_ray = False

    # --- lifecycle --------------------------------------------------------------------

    def start_ray(self) -> None:
        if ray.is_initialized():
            return
        if self.config.ray_address:
            ray.init(address=self.config.ray_address, log_to_driver=False)
            log.info("connected to the Ray cluster at %s", self.config.ray_address)
        else:
            num_cpus = self.config.num_cpus or os.cpu_count() or 1
            advertised = {resources.resource_name(resources.CPU): float(num_cpus)}
            if self.config.device_class and self.config.device_class != resources.CPU:
                # One unit per local GPU; Ray detects the GPUs itself.
                gpus = _local_gpu_count()
                if gpus:
                    advertised[resources.resource_name(self.config.device_class)] = float(gpus)
            ray.init(
                include_dashboard=False,
                num_cpus=num_cpus,
                resources=advertised,
                log_to_driver=False,
            )
            self._owns_ray = True
            log.info("started an embedded single-node Ray (%s)", advertised)
        self._remote = remote_function(self.config.max_retries)
        self._executions = ExecutionLog.remote()  # type: ignore[attr-defined]

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping after releasing in-flight jobs", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self) -> int:
        """Dispatch until stopped; returns the number of jobs finished."""
        from app.db.migrate import ensure_migrated

        ensure_migrated(self.engine)
        self.start_ray()
        with self.sessions() as session:
            requeued, failed = queue.requeue_stale(session)
        if requeued or failed:
            log.info("stale leases: %d job(s) re-queued, %d failed", requeued, failed)
        log.info("worker %s dispatching (concurrency %d)", self.owner, self.config.concurrency)
        try:
            while not self.stop_event.is_set():
                self.step()
                if self._done():
                    break
                self._wait()
        finally:
            self.shutdown()
        return self.finished

    def shutdown(self) -> None:
        if self.inflight:
            ids = [entry.job.id for entry in self.inflight.values()]
            for entry in self.inflight.values():
                with contextlib.suppress(Exception):  # already finished or Ray is gone
                    ray.cancel(entry.ref, force=True)
            with self.sessions() as session:
                released = queue.release(session, self.owner, ids)
            log.info("released %d in-flight job(s) back to the queue", released)
            self.inflight.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self.engine.dispose()

    # --- one iteration ----------------------------------------------------------------

    def step(self) -> None:
        now = time.monotonic()
        if now - self._last_requeue >= max(self.config.lease_s / 2, 1.0):
            self._last_requeue = now
            with self.sessions() as session:
                requeued, failed = queue.requeue_stale(session)
            if requeued or failed:
                log.info("stale leases: %d job(s) re-queued, %d failed", requeued, failed)
        if self.inflight and now - self._last_renew >= self.config.lease_s / 3:
            self._last_renew = now
            self._renew()
        self._collect()
        self._claim()

    def _done(self) -> bool:
        if self.config.parent_pid is not None and not _alive(self.config.parent_pid):
            log.info("parent process %d is gone: stopping", self.config.parent_pid)
            return True
        if self.config.max_jobs is not None and self.finished >= self.config.max_jobs:
            return True
        if self.config.idle_exit_s is not None and not self.inflight:
            now = time.monotonic()
            if self._idle_since is None:
                self._idle_since = now
            return now - self._idle_since >= self.config.idle_exit_s
        self._idle_since = None
        return False

    def _wait(self) -> None:
        if self.inflight:
            # Wake as soon as one task finishes, or after one poll interval.
            ray.wait(list(self.inflight), num_returns=1, timeout=self.config.poll_s)
        else:
            self.stop_event.wait(self.config.poll_s)

    def _renew(self) -> None:
        ids = [entry.job.id for entry in self.inflight.values()]
        with self.sessions() as session:
            lost = queue.renew(session, self.owner, ids, lease_s=self.config.lease_s)
        for ref, entry in list(self.inflight.items()):
            if entry.job.id in lost:
                log.warning("job %d: lease lost (cancelled or re-leased): stopped", entry.job.id)
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
                del self.inflight[ref]

    def _claim(self) -> None:
        room = self.config.concurrency - len(self.inflight)
        if room <= 0:
            return
        cluster = ray.cluster_resources()  # type: ignore[no-untyped-call]
        classes = resources.available_classes(cluster)
        with self.sessions() as session:
            claimed = queue.claim(
                session, self.owner, lease_s=self.config.lease_s, classes=classes, limit=room
            )
        for job in claimed:
            self._submit(job, cluster)

    def _submit(self, job: queue.ClaimedJob, cluster: dict[str, float]) -> None:
        payload: dict[str, Any] = {
            "job_id": job.id,
            "spec_json": job.spec_json,
            "steps": job.params.get("steps", profile.DEFAULT_STEPS),
            "memory_limit_bytes": job.params.get("memory_limit_bytes"),
            "timeout_s": job.params.get("timeout_s", profile.DEFAULT_TIMEOUT_S),
        }
        if job.kind == "train":
            payload.update(training.payload_for(job, self.owner, self.config.database_url))
        if self._executions is not None:
            payload["execution_log"] = self._executions
        fault = job.params.get("fault")
        if fault is not None and self.config.fault_injection and fault in FAULTS:
            payload["fault"] = fault
        options = resources.task_options(job.device_class, cluster)
        ref = self._remote.options(**options, name=f"phymem-job-{job.id}").remote(payload)
        self.inflight[ref] = InFlight(job=job, ref=ref, submitted=time.monotonic())
        log.info(
            "job %d (attempt %d/%d, %s) submitted with %s",
            job.id,
            job.attempts,
            job.max_attempts,
            job.device_class,
            options,
        )
        with self.sessions() as session:
            queue.set_progress(session, self.owner, job.id, 0.1)

    def _collect(self) -> None:
        if not self.inflight:
            return
        ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
        for ref in ready:
            entry = self.inflight.pop(ref)
            try:
                output = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                continue
            except Exception as error:
                self._count_executions(entry.job)
                self._record_error(entry.job, error)
            else:
                self._count_executions(entry.job)
                self._record(entry.job, output)
            self.finished += 1

    def _count_executions(self, job: queue.ClaimedJob) -> None:
        """Add Ray's retries of the job's task to its attempts (its claim counted one)."""
        if self._executions is None:
            return
        started = int(ray.get(self._executions.take.remote(job.id)))
        if started > 1:
            with self.sessions() as session:
                queue.add_attempts(session, self.owner, job.id, started - 1)
            log.info("job %d: its task ran %d times (Ray retried it)", job.id, started)

    # --- outcomes ---------------------------------------------------------------------

    def _record(self, job: queue.ClaimedJob, output: dict[str, Any]) -> None:
        if job.kind == "train":
            training.record(self, job, output)
            return
        measurement = output["measurement"]
        placement = output.get("placement", {})
        with self.sessions() as session:
            estimate = queue.estimate_for(session, job)
            result = profile.pair(
                estimate,
                measurement,
                device_class=job.device_class,
                ray_version=placement.get("ray_version"),
            )
            result.update(
                estimate_id=estimate["id"],
                node_id=placement.get("node_id"),
                assigned_resources=placement.get("assigned_resources"),
                worker_pid=placement.get("worker_pid"),
                worker_host=placement.get("worker_host"),
                attempt=job.attempts,
            )
            status = profile.STATUS_TO_JOB.get(result["status"], "failed")
            error = None if status == "succeeded" else (result.get("error") or result["status"])
            stored = queue.finish(
                session,
                self.owner,
                job,
                status=status,
                result=result,
                error=error,
                measurement={**result, "estimate_id": estimate["id"]},
            )
        log.info(
            "job %d: %s (estimate %s B, measured %s B)%s",
            job.id,
            status,
            result["estimate_bytes"],
            result["measured_bytes"],
            "" if stored is not None else " [lease lost: not written]",
        )

    def _record_error(self, job: queue.ClaimedJob, error: BaseException) -> None:
        status = "failed"
        oom_error = getattr(ray.exceptions, "OutOfMemoryError", None)
        if oom_error is not None and isinstance(error, oom_error):
            status = "oom"
            message = f"killed by Ray's memory monitor: {_exception_text(error)}"
        elif isinstance(error, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
            tries = self.config.max_retries + 1
            message = (
                f"the job's worker process died on each of {tries} tries "
                f"(Ray max_retries={self.config.max_retries}): {_exception_text(error)}"
            )
        elif isinstance(error, ray.exceptions.RayTaskError):
            cause = error.cause if getattr(error, "cause", None) is not None else error
            message = f"the job raised {_exception_text(cause)}"
        else:
            message = "".join(traceback.format_exception_only(error)).strip()[:4000]
        with self.sessions() as session:
            measurement = None
            if status == "oom":
                estimate = queue.estimate_for(session, job)
                measurement = {
                    "estimate_id": estimate["id"],
                    "device": job.device_class,
                    "status": "oom",
                    "measured_bytes": None,
                    "framework_versions": {"ray": ray.__version__},
                }
            result = {"status": "oom" if status == "oom" else "failed", "error": message}
            queue.finish(
                session,
                self.owner,
                job,
                status=status,
                result=result,
                error=message,
                measurement=measurement,
            )
        log.warning("job %d: %s: %s", job.id, status, message.splitlines()[0])


def _local_gpu_count() -> int:
    """GPUs on this machine (NVML; else CUDA_VISIBLE_DEVICES; else none)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            return len([part for part in visible.split(",") if part.strip()])
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
