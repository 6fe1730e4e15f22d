"""The Ray task that runs one job, in a fresh worker process (`max_calls=1`).

The measurement itself runs one level further down, in a `python -m profilers.allocator`
child: a child killed by the kernel (SIGKILL) or out of memory comes back as status
"oom" without taking the Ray worker down. If the Ray worker process itself dies, Ray
retries the task on a fresh one up to `max_retries` times; after that `ray.get` raises
`WorkerCrashedError` and the dispatcher marks the job failed. Every execution, Ray's
retries included, first checks in with the dispatcher's `ExecutionLog` actor, so that the
job's `attempts` counts them all.
"""

from __future__ import annotations

import os
import platform
import signal
from typing import Any

import ray

# Faults the dispatcher may inject (only with PHYMEM_WORKER_FAULT_INJECTION=1; for tests):
# "kill-worker" kills the Ray worker process on every attempt, "raise" raises in the task.
FAULTS = ("kill-worker", "raise")


@ray.remote(num_cpus=0)
class ExecutionLog:
    """How many times each job's task started (Ray's retries run the task again)."""

    def __init__(self) -> None:
        self.started: dict[int, int] = {}

    def start(self, job_id: int) -> int:
        self.started[job_id] = self.started.get(job_id, 0) + 1
        return self.started[job_id]

    def take(self, job_id: int) -> int:
        """The job's executions so far, forgetting them (the job's outcome is being written)."""
        return self.started.pop(job_id, 0)


def run_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one profile or train job; returns its outcome and where it ran."""
    from app.worker import profile
    from profilers.allocator import parse_spec

    executions = payload.get("execution_log")
    if executions is not None:
        ray.get(executions.start.remote(payload["job_id"]))

    context = ray.get_runtime_context()
    placement = {
        "node_id": context.get_node_id(),
        "assigned_resources": context.get_assigned_resources(),  # type: ignore[no-untyped-call]
        "worker_pid": os.getpid(),
        "worker_host": platform.node(),
        "ray_version": ray.__version__,
    }
    fault = payload.get("fault")
    if fault == "kill-worker":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "raise":
        raise RuntimeError("injected failure (fault 'raise')")

    device = "GPU:0" if ray.get_gpu_ids() else "CPU:0"
    if payload.get("kind") == "train":
        from app.worker import training

        return {
            "training": training.run_task({**payload, "device": device}),
            "placement": placement,
        }
    measurement = profile.measure(
        parse_spec(payload["spec_json"]),
        steps=int(payload.get("steps", profile.DEFAULT_STEPS)),
        device=device,
        memory_limit_bytes=payload.get("memory_limit_bytes"),
        timeout_s=payload.get("timeout_s", profile.DEFAULT_TIMEOUT_S),
    )
    return {"measurement": measurement, "placement": placement}


def remote_function(max_retries: int) -> Any:
    """`run_job` as a Ray remote function: one job per worker process, bounded retries."""
    return ray.remote(max_calls=1, max_retries=max_retries, retry_exceptions=False)(run_job)
