"""`phymem train`: train a family's autoencoder over a channel, measure it, evaluate its BER.

Locally (the default) the run happens in a fresh process on this machine, as `phymem
profile` measures; with --submit it is queued on the service (`POST /v1/jobs`, kind
"train") and run by a worker, and --wait follows it. Either way the progress bar is fed
by what the run reports (its job row, or a local run's progress file): phase, step of
total steps, latest loss, the Eb/N0 point being evaluated.

Only typer at module level; the API schemas, httpx, rich and the worker load inside.
"""

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli_errors import fail
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

EXIT_NOT_OK = 1
# Where a request field is set on the command line.
FLAG_OF = {
    "train.channel": "--channel",
    "train.cross": "--cross",
    "train.train_ebn0_db": "--train-ebn0",
    "train.steps": "--steps",
    "train.lr": "--lr",
    "train.batch": "--batch",
    "train.seed": "--seed",
    "train.checkpoint_every": "--checkpoint-every",
    "train.receivers": "--nr",
    "evaluate.ebn0_db": "--eval-ebn0",
    "evaluate.target_errors": "--target-errors",
    "evaluate.max_bits": "--max-bits",
    "evaluate.baselines": "--baselines",
    "evaluate.seed": "--eval-seed",
    "evaluate.test_samples": "--test-samples",
}
BER_KEYS = ("detector", "ebn0_db", "ber", "ci_low", "ci_high", "bits", "errors")


def _flag(field: str) -> str:
    for prefix, flag in FLAG_OF.items():
        if field == prefix or field.startswith(prefix + "."):
            return flag
    if field.startswith("spec."):
        return "--" + field.removeprefix("spec.").replace("_", "-")
    return field


def _parse_ebn0(text: str) -> float | list[float]:
    parts = [p.strip() for p in text.replace(":", ",").split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--train-ebn0: expected a number or lo,hi, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values
    raise ValueError(f"--train-ebn0: expected a number or lo,hi, got {text!r}")


def build_request(
    spec_file: Path | None, flags: dict[str, Any], train: dict[str, Any], evaluate: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """The spec and the resolved training parameters, or a ValueError naming the flag."""
    from pydantic import ValidationError

    from app.api.schemas import EvaluateParams, TrainParams
    from app.services.training import InvalidTraining, resolve
    from app.specio import build_spec

    spec = build_spec(spec_file, flags)
    values = {"train": train, "evaluate": evaluate}
    parsed: dict[str, Any] = {}
    for name, cls in (("train", TrainParams), ("evaluate", EvaluateParams)):
        given = {key: value for key, value in values[name].items() if value is not None}
        try:
            parsed[name] = cls.model_validate(given)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join([name, *(str(p) for p in first["loc"])])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{_flag(field)}: {message}") from None
    try:
        return resolve(spec, parsed["train"], parsed["evaluate"])
    except InvalidTraining as error:
        raise ValueError(f"{_flag(error.field)}: {error.message}") from None


def _bar(fetch: Callable[[], dict[str, Any] | None], done: Callable[[], bool]) -> None:
    """A rich progress bar on stderr, fed by `fetch()` (phase, step, total_steps, loss,
    ebn0_db) until `done()`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("queued", total=None, detail="")
        while True:
            finished = done()
            state = fetch() or {}
            phase = state.get("phase") or state.get("status") or "queued"
            detail = []
            if state.get("loss") is not None:
                detail.append(f"loss {state['loss']:.4g}")
            if phase == "evaluate" and state.get("ebn0_db") is not None:
                detail.append(f"Eb/N0 {state['ebn0_db']:g} dB")
            bar.update(
                task,
                description=str(phase),
                total=state.get("total_steps"),
                completed=state.get("step") or 0,
                detail="  ".join(detail),
            )
            if finished:
                return
            time.sleep(0.5)


def _summary(
    spec: Any, train: Any, evaluate: Any, result: dict[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "spec": spec.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
        "evaluate": evaluate.model_dump(mode="json"),
        "status": result.get("status"),
        "final_loss": result.get("final_loss"),
        "steps": result.get("steps"),
        "resumed_from_step": result.get("resumed_from_step"),
        "measured_bytes": result.get("measured_bytes"),
        "estimate_bytes": result.get("estimate_bytes"),
        "estimate_mode": result.get("estimate_mode"),
        "error_pct": result.get("error_pct"),
        "step_time_s": result.get("step_time_s"),
        "ber": [{key: row.get(key) for key in BER_KEYS} for row in rows],
        "metrics": result.get("metrics") or [],
        **{
            key: result[key]
            for key in ("job_id", "job_status", "workdir", "error")
            if key in result
        },
    }


def _estimate(spec: Any) -> dict[str, Any]:
    """The estimate the run is paired with: framework mode where it models every layer
    (autoencoders, CsiNet in fp32, DetNet's training graph in fp32), else paper mode (the
    combinations framework mode refuses, such as mixed precision with conv layers)."""
    from app.worker import profile
    from estimator.errors import InvalidSpec

    try:
        return profile.estimate_dict(spec)
    except InvalidSpec:
        return profile.estimate_dict(spec, "paper")


def _train_locally(
    spec: Any, train: Any, evaluate: Any, workdir: Path | None, show_bar: bool
) -> dict[str, Any]:
    from app.services.training import PROGRESS_FILE
    from app.worker import profile, training
    from estimator.spec import canonical_json

    directory = workdir or Path(tempfile.mkdtemp(prefix="phymem-train-"))
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": "train",
        "spec_json": canonical_json(spec),
        "train": train.model_dump(mode="json"),
        "evaluate": evaluate.model_dump(mode="json"),
        "job_dir": str(directory.resolve()),
    }
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(training.run_task(payload)))
    runner.start()
    if show_bar:

        def fetch() -> dict[str, Any] | None:
            with contextlib.suppress(OSError, ValueError):
                state: dict[str, Any] = json.loads((directory / PROGRESS_FILE).read_text())
                return state
            return None

        _bar(fetch, lambda: not runner.is_alive())
    runner.join()
    result: dict[str, Any] = {"status": outcome.get("status"), "workdir": str(directory)}
    if outcome.get("status") == "ok":
        estimate = _estimate(spec)
        result.update(profile.pair(estimate, outcome["measurement"], device_class="cpu"))
        result.update(
            status="ok",
            final_loss=outcome["final_loss"],
            steps=outcome["steps"],
            resumed_from_step=outcome["resumed_from_step"],
            metrics=outcome.get("metrics") or [],
        )
    else:
        result["error"] = outcome.get("error")
    result["rows"] = outcome.get("ber") or []
    return result


def _train_on_service(
    spec: Any,
    train: Any,
    evaluate: Any,
    *,
    url: str,
    api_key: str | None,
    device_class: str,
    wait: bool,
    timeout_s: float,
    show_bar: bool,
    as_json: bool,
) -> dict[str, Any] | None:
    from app.cli_jobs import finished, service

    body = {
        "kind": "train",
        "spec": spec.model_dump(mode="json"),
        "mode": _estimate(spec)["mode"],
        "device_class": device_class,
        "train": train.model_dump(mode="json"),
        "evaluate": evaluate.model_dump(mode="json"),
    }
    with service(url, api_key) as jobs:
        started = jobs.start(body, wait=wait, as_json=as_json, timeout_s=timeout_s)
        if started is None:
            return None
        job, location, deadline = started

        def poll() -> dict[str, Any]:
            job.update(jobs.get(location))
            return job

        def done() -> bool:
            return finished(job, deadline, timeout_s)

        if show_bar:
            _bar(poll, done)
        else:
            while not done():
                time.sleep(0.5)
                poll()
        rows = jobs.get(f"{location}/ber")["rows"]
        metrics = jobs.get(f"{location}/metrics")["metrics"]
    result = dict(job.get("result") or {}, metrics=metrics)
    result["status"] = "ok" if job["status"] == "succeeded" else job["status"]
    if job.get("error"):
        result["error"] = job["error"]
    result.update(job_id=job["id"], job_status=job["status"], rows=rows)
    return result


def _headline(summary: dict[str, Any]) -> str:
    """What was trained, in one line."""
    spec, train = summary["spec"], summary["train"]
    steps = f"{summary.get('steps')} steps, batch {train['batch']}"
    if "family" not in spec:
        layers = len(spec.get("layers") or [])
        return f"{spec.get('loss')}-loss model of {layers} layers, {steps}"
    shape = f"{spec['nt']}x{spec.get('nr') or spec['nt']}"
    return f"{spec['family']} k={spec['k']} {shape} over {train['channel']}, {steps}"


def _print_metrics(metrics: list[dict[str, Any]]) -> None:
    for row in metrics:
        at = "" if row.get("ebn0_db") is None else f" at {row['ebn0_db']:g} dB"
        before = (row.get("detail") or {}).get("untrained")
        untrained = "" if before is None else f"  (untrained {before:.4g})"
        typer.echo(f"{row['name'] + at + ':':<18}{row['value']:.4g}{untrained}")


def _print_summary(summary: dict[str, Any]) -> None:
    from estimator.units import format_gib

    def gib(value: Any) -> str:
        return "-" if value is None else f"{format_gib(int(value))} GiB ({int(value)} B)"

    typer.echo(_headline(summary))
    typer.echo(f"status:    {summary['status']}")
    if summary.get("final_loss") is not None:
        typer.echo(f"loss:      {summary['final_loss']:.5g}")
    typer.echo(f"estimate:  {gib(summary.get('estimate_bytes'))} [{summary.get('estimate_mode')}]")
    typer.echo(f"measured:  {gib(summary.get('measured_bytes'))}")
    if summary.get("error"):
        typer.echo(f"reason:    {str(summary['error']).strip().splitlines()[-1][:300]}")
    _print_metrics(summary["metrics"])
    if summary["ber"]:
        typer.echo("detector      Eb/N0         BER   95% interval                  bits  errors")
        for row in summary["ber"]:
            typer.echo(
                f"{row['detector']:<12}{row['ebn0_db']:7.2f}  {row['ber']:10.4e}  "
                f"[{row['ci_low']:.3e}, {row['ci_high']:.3e}]  {row['bits']:>10}  "
                f"{row['errors']:>6}"
            )


ChannelOpt = Annotated[str | None, typer.Option(help="awgn | cross | rayleigh (default awgn)")]
CrossOpt = Annotated[float | None, typer.Option(help="Off-diagonal gain of cross (default 0.3).")]
TrainEbn0Opt = Annotated[
    str | None,
    typer.Option(
        help="Training Eb/N0 in dB, or lo,hi drawn per sample (default 7; DetNet: its SNR, "
        "default 0,15)."
    ),
]
StepsOpt = Annotated[int | None, typer.Option(help="Optimizer steps (default 2000).")]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate (default the optimizer's).")]
SeedOpt = Annotated[int | None, typer.Option(help="Training seed (default 0).")]
CheckpointOpt = Annotated[int | None, typer.Option(help="Steps between checkpoints (default 100).")]
EvalEbn0Opt = Annotated[
    str | None, typer.Option(help="Evaluation grid, start:stop:step or a,b,c (default 0:12:1).")
]
TargetErrorsOpt = Annotated[int | None, typer.Option(help="Bit errors per point (default 1000).")]
MaxBitsOpt = Annotated[int | None, typer.Option(help="Bit budget per point (default 10000000).")]
BaselinesOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated zf,mmse,ml, or 'none' (default zf,mmse,ml; DetNet zf,mmse)."
    ),
]
EvalSeedOpt = Annotated[int | None, typer.Option(help="Monte Carlo seed (default 0).")]
TestSamplesOpt = Annotated[
    int | None, typer.Option(help="CsiNet: held-out channels for NMSE and rho (default 2000).")
]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option(help="Local run: checkpoint, model and history here (rerun resumes)."),
]
TimeoutOpt = Annotated[float, typer.Option(help="Give up waiting after this many s.")]


def _detnet_receivers(spec_file: Path | None, flags: dict[str, Any]) -> int | None:
    """DetNet's N: the spec's `nr` (its layer list has no place for it; the job keeps it
    as `train.receivers`)."""
    from app.specio import read_spec_file

    data: dict[str, Any] = read_spec_file(spec_file) if spec_file else {}
    data.update({key: value for key, value in flags.items() if value is not None})
    if data.get("family") != "detnet" or data.get("nr") is None:
        return None
    return int(data["nr"])


def _values(given: dict[str, Any], flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train and evaluate fields the options set (None where not given)."""
    train_ebn0, baselines = given["train_ebn0"], given["baselines"]
    train = {
        "channel": given["channel"],
        "cross": given["cross"],
        "train_ebn0_db": None if train_ebn0 is None else _parse_ebn0(train_ebn0),
        "batch": flags.get("batch"),
        **{key: given[key] for key in ("steps", "lr", "seed", "checkpoint_every")},
    }
    evaluate = {
        "ebn0_db": given["eval_ebn0"],
        "target_errors": given["target_errors"],
        "max_bits": given["max_bits"],
        "baselines": None
        if baselines is None
        else [b.strip() for b in baselines.split(",") if b.strip() not in ("", "none")],
        "seed": given["eval_seed"],
        "test_samples": given["test_samples"],
    }
    return train, evaluate


def _parsed_request(spec_file: Path | None, flags: dict[str, Any], given: dict[str, Any]) -> Any:
    """build_request from the command's options, or exit 2 with the flag's message."""
    from app.specio import UsageError, validation_message

    try:
        train, evaluate = _values(given, flags)
        train["receivers"] = _detnet_receivers(spec_file, flags)
        return build_request(spec_file, flags, train, evaluate)
    except (ValueError, UsageError) as error:
        fail(validation_message(error))


def _run(spec: Any, params: Any, evaluation: Any, given: dict[str, Any]) -> dict[str, Any] | None:
    """The run, here or on the service; None when a submission was not followed."""
    from app.specio import UsageError

    try:
        if not given["submit"]:
            return _train_locally(spec, params, evaluation, given["workdir"], True)
        return _train_on_service(
            spec,
            params,
            evaluation,
            url=given["url"],
            api_key=given["api_key"],
            device_class=given["device_class"],
            wait=given["wait"],
            timeout_s=given["timeout"],
            show_bar=True,  # on stderr: stdout stays JSON
            as_json=given["as_json"],
        )
    except UsageError as error:
        fail(str(error))


@spec_flags()
def train(
    spec_file: SpecArg = None,
    *,
    flags: dict[str, Any],
    channel: ChannelOpt = None,
    cross: CrossOpt = None,
    train_ebn0: TrainEbn0Opt = None,
    steps: StepsOpt = None,
    lr: LrOpt = None,
    seed: SeedOpt = None,
    checkpoint_every: CheckpointOpt = None,
    eval_ebn0: EvalEbn0Opt = None,
    target_errors: TargetErrorsOpt = None,
    max_bits: MaxBitsOpt = None,
    baselines: BaselinesOpt = None,
    eval_seed: EvalSeedOpt = None,
    test_samples: TestSamplesOpt = None,
    workdir: WorkdirOpt = None,
    submit: SubmitOpt = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    device_class: DeviceClassOpt = "cpu",
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 86_400,
    as_json: JsonOpt = False,
) -> None:
    """Train a family's model; measure its memory; evaluate it.

    The autoencoders (ae, ae-embedding, bae, tanh-bae) train over a MIMO channel and report
    BER rows beside the baselines; csinet (--gamma) trains on synthetic angular-delay CSI
    and reports NMSE and rho; detnet (--nt K, --nr N, --layers L) trains on Gaussian
    channels with BPSK and reports BER at 12 dB and BER rows beside zf and mmse. Exit 0
    when it succeeded, 1 when it failed or ran out of memory, 2 on invalid input (one
    line naming the flag).
    """
    given = dict(locals())
    spec, params, evaluation = _parsed_request(spec_file, flags, given)
    result = _run(spec, params, evaluation, given)
    if result is None:
        return
    summary = _summary(spec, params, evaluation, result, result.pop("rows", []))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)
    raise typer.Exit(0 if summary["status"] == "ok" else EXIT_NOT_OK)


def register(app: typer.Typer) -> None:
    app.command()(train)
