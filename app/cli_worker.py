"""`phymem worker` (the job dispatcher) and `phymem profile` (estimate vs measurement).

Only typer at module level: Ray, TensorFlow, SQLAlchemy and httpx are imported inside the
commands. `register(app)` attaches both commands; `spawn_worker()` / `stop_worker()` let
`phymem serve --with-worker` run one worker beside the API.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli_errors import run_command
from app.cli_options import (
    DEFAULT_URL,
    ApiKeyOpt,
    DeviceClassOpt,
    JsonOpt,
    SpecArg,
    SubmitOpt,
    UrlOpt,
    WaitOpt,
    spec_flags,
)

if TYPE_CHECKING:
    from estimator.spec import FamilySpec, ModelSpec

EXIT_NOT_OK = 1  # the measurement ran out of memory or failed


def spawn_worker(args: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start `phymem worker` as a child process (same interpreter, same environment)."""
    command = [sys.executable, "-m", "app.cli_worker", "worker", *(args or [])]
    return subprocess.Popen(command, start_new_session=True)


def stop_worker(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM the worker (it releases its jobs and stops Ray), SIGKILL its group if stuck."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_worker_beside(args: list[str] | None = None) -> subprocess.Popen[bytes]:
    """`phymem serve --with-worker`: one worker that stops when this process exits.

    The worker also exits by itself if this process dies without running its exit hooks.
    """
    import atexit

    process = spawn_worker([*(args or []), "--parent-pid", str(os.getpid())])
    atexit.register(stop_worker, process)
    return process


def _configure_logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _print_pair(result: dict[str, Any]) -> None:
    from estimator.units import format_gib

    def gib(value: Any) -> str:
        return "-" if value is None else f"{format_gib(int(value))} GiB ({int(value)} B)"

    typer.echo(f"device:    {result.get('device')} ({result.get('tf_device') or '-'})")
    typer.echo(f"estimate:  {gib(result.get('estimate_bytes'))} [{result.get('estimate_mode')}]")
    if result.get("upper_bytes") is not None:
        typer.echo(f"upper:     {gib(result.get('upper_bytes'))} [{result.get('basis')}]")
    runs = result.get("runs") or []
    label = f"median of {len(runs)} runs, " if len(runs) > 1 else ""
    typer.echo(f"measured:  {gib(result.get('measured_bytes'))} [{label}{result.get('status')}]")
    if len(runs) > 1:
        typer.echo(
            f"spread:    min {gib(result.get('measured_min_bytes'))}, "
            f"max {gib(result.get('measured_max_bytes'))}; "
            f"all within upper: {result.get('within_upper')}"
        )
    if result.get("error_pct") is not None:
        typer.echo(f"error:     {result['error_pct']:+.2f}% (estimate vs measured)")
    if result.get("step_time_s") is not None:
        typer.echo(f"step time: {result['step_time_s'] * 1000:.1f} ms")
    if result.get("status") != "ok" and result.get("error"):
        typer.echo(f"reason:    {str(result['error']).strip().splitlines()[-1][:300]}")


def _profile_locally(
    spec: FamilySpec | ModelSpec,
    mode: str | None,
    steps: int,
    memory_limit: int | None,
    timeout_s: float,
    runs: int = 1,
    time_budget_s: float | None = None,
) -> dict[str, Any]:
    """`runs` fresh processes, one after another, combined (app.worker.profile.combine)."""
    from app.worker import profile

    estimate = profile.estimate_dict(spec, mode)
    measurements = profile.measure_runs(
        spec,
        runs,
        steps=steps,
        memory_limit_bytes=memory_limit,
        timeout_s=timeout_s,
        time_budget_s=time_budget_s,
    )
    pairs = [profile.pair(estimate, m, device_class="cpu") for m in measurements]
    return profile.combine(pairs)


def _job_body(
    spec: FamilySpec | ModelSpec,
    device_class: str,
    mode: str | None,
    steps: int,
    memory_limit: int | None,
) -> dict[str, Any]:
    """The `POST /v1/jobs` body of one profile run."""
    body: dict[str, Any] = {
        "kind": "profile",
        "spec": spec.model_dump(mode="json"),
        "device_class": device_class,
        "steps": steps,
    }
    if mode is not None:
        body["mode"] = mode
    if memory_limit is not None:
        body["memory_limit_bytes"] = memory_limit
    return body


def _submit(
    body: dict[str, Any],
    *,
    url: str,
    api_key: str | None,
    wait: bool,
    timeout_s: float,
    as_json: bool,
) -> dict[str, Any] | None:
    """Queue one run; with `wait`, its result (None when only submitted)."""
    from app.cli_jobs import finished, service

    with service(url, api_key) as jobs:
        started = jobs.start(body, wait=wait, as_json=as_json, timeout_s=timeout_s)
        if started is None:
            return None
        job, location, deadline = started
        while not finished(job, deadline, timeout_s):
            time.sleep(1.0)
            job = jobs.get(location)
    result = dict(job.get("result") or {"status": "failed", "error": job.get("error")})
    result.setdefault("status", "failed")
    result["job_id"] = job["id"]
    result["job_status"] = job["status"]
    return result


def _submit_runs(body: dict[str, Any], runs: int, **service: Any) -> dict[str, Any] | None:
    """`runs` jobs of `body` on the service, combined (None when none was waited for)."""
    from app.worker import profile as profiling

    done = [r for r in (_submit(body, **service) for _ in range(runs)) if r is not None]
    return profiling.combine(done) if done else None


RayAddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster host:port (PHYMEM_RAY_ADDRESS); default embedded.")
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option(min=1, help="Jobs in flight (PHYMEM_WORKER_CONCURRENCY).")
]
LeaseOpt = Annotated[float | None, typer.Option(help="Job lease (PHYMEM_WORKER_LEASE_S).")]
PollOpt = Annotated[float | None, typer.Option(help="Queue poll interval (PHYMEM_WORKER_POLL_S).")]
RetriesOpt = Annotated[
    int | None,
    typer.Option(min=0, help="Ray retries of a dead job process (PHYMEM_WORKER_MAX_RETRIES)."),
]
GpuClassOpt = Annotated[
    str | None, typer.Option(help="Class of local GPUs for the embedded Ray, e.g. a100-80gb.")
]
CpusOpt = Annotated[int | None, typer.Option(min=1, help="CPUs of the embedded Ray (default all).")]
MaxJobsOpt = Annotated[int | None, typer.Option(min=1, help="Exit after this many jobs finish.")]
IdleExitOpt = Annotated[
    float | None, typer.Option(help="Exit once the queue has been empty this long (s).")
]
ParentPidOpt = Annotated[
    int | None, typer.Option(help="Exit when this process is gone.", hidden=True)
]


def worker(
    ray_address: RayAddressOpt = None,
    concurrency: ConcurrencyOpt = None,
    lease_seconds: LeaseOpt = None,
    poll_seconds: PollOpt = None,
    max_retries: RetriesOpt = None,
    device_class: GpuClassOpt = None,
    num_cpus: CpusOpt = None,
    max_jobs: MaxJobsOpt = None,
    idle_exit: IdleExitOpt = None,
    parent_pid: ParentPidOpt = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Run jobs from the database queue on Ray (embedded, or PHYMEM_RAY_ADDRESS)."""
    _configure_logging(log_level)
    from app.core.config import get_settings
    from app.db.migrate import UnmigratedDatabase
    from app.worker.dispatcher import Dispatcher, WorkerConfig

    settings = get_settings()
    config = WorkerConfig(
        database_url=settings.sqlalchemy_url,
        ray_address=ray_address or settings.ray_address,
        lease_s=lease_seconds or settings.worker_lease_s,
        poll_s=poll_seconds or settings.worker_poll_s,
        concurrency=concurrency or settings.worker_concurrency,
        max_retries=settings.worker_max_retries if max_retries is None else max_retries,
        device_class=device_class or settings.worker_device_class,
        num_cpus=num_cpus,
        max_jobs=max_jobs,
        idle_exit_s=idle_exit,
        parent_pid=parent_pid,
    )
    dispatcher = Dispatcher(config)
    dispatcher.install_signal_handlers()
    try:
        done = dispatcher.run()
    except UnmigratedDatabase as error:
        typer.secho(f"phymem worker: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"phymem worker: stopped after {done} job(s)", err=True)


def _parse_limit(memory_limit: str | None) -> int | None:
    from app.specio import UsageError
    from estimator.units import parse_size

    if memory_limit is None:
        return None
    try:
        return parse_size(memory_limit)
    except ValueError as error:
        raise UsageError(f"--memory-limit: {error}") from None


ProfileModeOpt = Annotated[
    str | None,
    typer.Option(help="Estimate mode: paper | framework (default framework if present)."),
]
StepsOpt = Annotated[int, typer.Option(min=1, max=100, help="Measured steps.")]
RunsOpt = Annotated[
    int, typer.Option(min=1, max=50, help="Fresh processes (each lands on one allocator layout).")
]
TimeBudgetOpt = Annotated[
    float,
    typer.Option(
        help="Seconds of predicted compute a run may take: fewer measured steps, or a "
        "refusal naming what would run it (float16 on AVX512-FP16 CPUs is slow)."
    ),
]
MemoryLimitOpt = Annotated[
    str | None,
    typer.Option(help="Cap the measuring process's memory, e.g. 2GiB (OOM if exceeded)."),
]


def _tensorflow_warning(spec: FamilySpec | ModelSpec, mode: str | None) -> str | None:
    """A warning when this TensorFlow is not the one the estimate's basis was traced on."""
    from app.worker import profile as profiling

    basis = str(profiling.estimate_dict(spec, mode).get("basis") or "")
    warning = profiling.tensorflow_warning(basis)
    if warning is not None:
        typer.echo(f"phymem: warning: {warning}", err=True)
    return warning


def _report(outcome: dict[str, Any], as_json: bool) -> None:
    """Print the pair and exit 0 when it is ok, EXIT_NOT_OK otherwise (nothing: submitted)."""
    if not outcome:
        return
    if as_json:
        typer.echo(json.dumps(outcome, indent=2, default=str))
    else:
        _print_pair(outcome)
    raise typer.Exit(0 if outcome.get("status") == "ok" else EXIT_NOT_OK)


@spec_flags()
def profile(
    spec_file: SpecArg = None,
    *,
    flags: dict[str, Any],
    mode: ProfileModeOpt = None,
    steps: StepsOpt = 3,
    runs: RunsOpt = 3,
    time_budget: TimeBudgetOpt = 60.0,
    memory_limit: MemoryLimitOpt = None,
    timeout: Annotated[float, typer.Option(help="Give up on a run after this many seconds.")] = 600,
    submit: SubmitOpt = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    device_class: DeviceClassOpt = "cpu",
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure one spec's training peak and compare it with the estimate.

    Locally (default) each of --runs measurements runs on this machine's CPU in its own
    fresh process (processes land on different allocator layouts), reported as median,
    min and max beside the estimate's peak_bytes and upper_bytes; with --submit, --runs
    jobs are queued on the service and run by a worker (one stored measurement each).
    Framework mode's allocation model was traced on TensorFlow 2.21's CPU BFC allocator
    (basis tensorflow-2.21-cpu-bfc); a GPU estimate is that allocator model plus the
    device's calibrated context. Exit 0 when every run succeeded, 1 when one ran out of
    memory, failed or was refused, 2 on invalid input.
    """
    outcome: dict[str, Any] = {}

    def body() -> None:
        from app.specio import build_spec, parse_mode

        spec = build_spec(spec_file, flags)
        chosen = None if mode is None else parse_mode(mode)
        limit = _parse_limit(memory_limit)
        warning = _tensorflow_warning(spec, chosen)
        if submit:
            job = _job_body(spec, device_class, chosen, steps, limit)
            service = {"url": url, "api_key": api_key, "wait": wait, "as_json": as_json}
            result = _submit_runs(job, runs, timeout_s=timeout, **service)
        else:
            result = _profile_locally(spec, chosen, steps, limit, timeout, runs, time_budget)
        if result is not None:
            outcome.update(result, **({"warnings": [warning]} if warning is not None else {}))

    run_command(body)
    _report(outcome, as_json)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(profile)


def main() -> None:
    """`python -m app.cli_worker worker|profile` (the same commands as `phymem ...`)."""
    cli = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    register(cli)
    cli()


if __name__ == "__main__":
    main()
