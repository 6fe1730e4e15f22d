"""The `phymem` command line: estimates, Table 2, the CI gate and the inverse questions.

Heavy modules (rich, FastAPI, TensorFlow) are imported inside the commands that need them,
so `phymem gate` starts as fast as the estimator allows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app import exits
from app.cli_errors import run_command
from app.cli_options import (
    ALL_SPEC_FLAGS,
    BasisOpt,
    DeviceOpt,
    JsonOpt,
    ModeOpt,
    SpecArg,
    VramOpt,
    spec_flags,
)
from app.specio import UsageError
from app.specio import build_spec as _build_spec
from app.specio import parse_mode as _mode
from app.specio import resolve_vram as _vram
from estimator.engine import DEFAULT_MODE

if TYPE_CHECKING:
    from estimator.engine import Estimate

app = typer.Typer(
    name="phymem",
    help="GPU memory for training end-to-end learned physical layers. Framework mode (the "
    "default) was traced on TensorFlow 2.21's CPU BFC allocator (basis "
    "tensorflow-2.21-cpu-bfc); a GPU estimate is that allocator model plus the device's "
    "calibrated context.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an internal error.")
    ] = False,
) -> None:
    """GPU memory for training end-to-end learned physical layers."""
    exits.set_debug(debug)


def _print_estimate(estimate: Estimate) -> None:
    from rich.console import Console
    from rich.table import Table

    from estimator.units import format_gib

    table = Table(title=f"Per-layer memory ({estimate.mode} mode, batch {estimate.batch})")
    for column in (
        "#",
        "layer",
        "part",
        "out",
        "params",
        "weights",
        "grads",
        "optim",
        "in/out",
        "ephem.",
        "total",
    ):
        table.add_column(column, justify="left" if column in ("layer", "part") else "right")
    for row in estimate.layers:
        table.add_row(
            "" if row.index is None else str(row.index),
            row.name + (f" ({row.note})" if row.note else ""),
            row.part or "",
            _short(row.output_features),
            _short(row.params),
            *(
                format_gib(v)
                for v in (
                    row.weights,
                    row.gradients,
                    row.optimizer,
                    row.activations,
                    row.ephemeral,
                    row.total,
                )
            ),
        )
    console = Console(width=max(Console().width, 150))
    console.print(table)
    breakdown = estimate.breakdown
    summary = Table(title="Breakdown (GiB)", show_header=False)
    for name in ("weights", "gradients", "optimizer", "activations", "ephemeral", "resident"):
        summary.add_row(name, format_gib(getattr(breakdown, name)))
    summary.add_row("[bold]total[/bold]", f"[bold]{format_gib(estimate.total_bytes)}[/bold]")
    console.print(summary)
    console.print(f"total_bytes = {estimate.total_bytes}")


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 12 else f"{value:.3e}"


@app.command()
@spec_flags()
def estimate(
    spec_file: SpecArg = None,
    *,
    flags: dict[str, Any],
    mode: ModeOpt = DEFAULT_MODE,
    as_json: JsonOpt = False,
) -> None:
    """Estimate the training memory of one spec, layer by layer."""

    def body() -> None:
        from estimator.compression import compression_summary
        from estimator.engine import estimate as run_estimate
        from estimator.engine import model_for
        from estimator.layers import resolve

        spec = _build_spec(spec_file, flags)
        result = run_estimate(spec, _mode(mode))
        if as_json:
            layers = resolve(model_for(spec, result.mode))
            data = result.to_dict() | compression_summary(layers)
            typer.echo(json.dumps(data, indent=2))
        else:
            _print_estimate(result)

    run_command(body)


GroupPruneOpt = Annotated[
    float,
    typer.Option(
        help="Fraction of each kernel's input groups removed (SGL), in [0, 1); applied "
        "first, then --prune, --quantize and --cluster act on the surviving groups."
    ),
]
MeasureOpt = Annotated[
    bool,
    typer.Option(
        "--measure", help="Also build, convert (TFLite) and measure it, in fresh processes."
    ),
]
LatencyRunsOpt = Annotated[
    int,
    typer.Option(
        min=0, max=10000, help="With --measure: median LiteRT latency over this many runs."
    ),
]
StoreOpt = Annotated[
    bool,
    typer.Option(
        "--store",
        help="With --measure: store each measured file size (quantity model_size, beside "
        "its recipe's estimate) and latency (quantity latency) in the database "
        "(PHYMEM_DATABASE_URL), as the dashboard and GET /v1/measurements show them.",
    ),
]


@app.command()
@spec_flags()
def compress(
    spec_file: SpecArg = None,
    *,
    flags: dict[str, Any],
    prune: Annotated[float, typer.Option(help="Magnitude-pruning sparsity in [0, 1).")] = 0.0,
    quantize: Annotated[str, typer.Option(help="none | float16 | dynamic (int8)")] = "none",
    scales: Annotated[str, typer.Option(help="int8 scales: tensor | channel")] = "tensor",
    cluster: Annotated[int | None, typer.Option(help="Weight clusters C (at least 2).")] = None,
    group_prune: GroupPruneOpt = 0.0,
    measure: MeasureOpt = False,
    latency_runs: LatencyRunsOpt = 0,
    store: StoreOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Estimate the stored size of one compression recipe; with --measure, also the
    measured TFLite file sizes (float32, float16, dynamic int8; pruned and clustered with
    the compress extra) beside the estimate, and with --store keep them as measurements.
    Exit 1 when a measurement fails, 2 on invalid input."""

    def body() -> None:
        from estimator.compression import recipe_report
        from estimator.engine import model_for
        from estimator.layers import resolve

        _check_recipe(quantize, scales, prune, cluster, group_prune)
        if store and not measure:
            raise UsageError("--store: stores what --measure measured; add --measure")
        spec = _build_spec(spec_file, flags)
        layers = resolve(model_for(spec, "paper"))
        if measure and (prune or cluster):
            _check_tfmot_measurable()
        report = recipe_report(
            layers,
            prune=prune,
            quantize=quantize,  # type: ignore[arg-type]
            scales=scales,  # type: ignore[arg-type]
            cluster=cluster,
            group_prune=group_prune,
        )
        if measure:
            report |= _measure_recipe(spec, quantize, prune or None, cluster, latency_runs)
        if store:
            report["stored"] = _store_measured(spec, report["measured"], latency_runs)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            _print_recipe(report)

    run_command(body)


def _check_recipe(
    quantize: str, scales: str, prune: float, cluster: int | None, group_prune: float
) -> None:
    """UsageError naming the first compression flag out of its range."""
    if quantize not in ("none", "float16", "dynamic"):
        raise UsageError(f"--quantize: {quantize!r} is not none, float16 or dynamic")
    if scales not in ("tensor", "channel"):
        raise UsageError(f"--scales: {scales!r} is not tensor or channel")
    if not 0 <= prune < 1:
        raise UsageError(f"--prune: {prune} is not in [0, 1)")
    if cluster is not None and cluster < 2:
        raise UsageError(f"--cluster: {cluster} is below 2")
    if not 0 <= group_prune < 1:
        raise UsageError(f"--group-prune: {group_prune} is not in [0, 1)")


def _print_recipe(report: dict[str, Any]) -> None:
    for storage, size in report["size_bytes"].items():
        typer.echo(f"{storage:7} {size:>14} bytes  ({size / 2**20:.3f} MiB)")
    grouped = report.get("group_pruned")
    if isinstance(grouped, dict):
        typer.echo(f"groups removed {grouped['removed']}, then the recipe above:")
        for storage, size in grouped["size_bytes"].items():
            typer.echo(f"{storage:7} {size:>14} bytes  ({size / 2**20:.3f} MiB)")
        typer.echo(f"MACs {grouped['macs']} (surviving groups), {grouped['macs_nonzero']} nonzero")
    file = report.get("measured_file")
    if isinstance(file, dict):
        typer.echo(f"measured TFLite file {file['bytes']:>14} bytes, gzip {file['gzip_bytes']}")
    stored = report.get("stored")
    if isinstance(stored, dict):
        count, estimate_id = len(stored["measurement_ids"]), stored["estimate_id"]
        typer.echo(f"stored {count} measurements beside estimate {estimate_id}")


def _check_tfmot_measurable() -> None:
    from profilers.compression import MISSING_TFMOT, tfmot_available

    if not tfmot_available():
        raise UsageError(f"--measure with --prune/--cluster: {MISSING_TFMOT}")


def _measure_recipe(
    spec: Any, quantize: str, prune: float | None, cluster: int | None, latency_runs: int
) -> dict[str, object]:
    import subprocess

    from profilers.compression import measure_in_subprocess, recipe_file

    try:
        measured = measure_in_subprocess(
            spec, prune=prune, cluster=cluster, latency_runs=latency_runs
        )
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        typer.echo(f"phymem: {error}", err=True)
        raise typer.Exit(1) from None
    return {"measured": measured, "measured_file": recipe_file(measured, quantize, prune, cluster)}


def _store_measured(spec: Any, measured: Any, latency_runs: int) -> dict[str, Any]:
    """The measured sizes and latencies as stored measurements; UsageError (exit 2) for a
    database that is not migrated."""
    from app.core.config import get_settings
    from app.db.migrate import UnmigratedDatabase, ensure_migrated
    from app.db.session import make_engine, make_sessionmaker
    from app.services.compression import store_measured

    engine = make_engine(get_settings().sqlalchemy_url)
    try:
        try:
            ensure_migrated(engine)
        except UnmigratedDatabase as error:
            raise UsageError(f"--store: {error}") from None
        with make_sessionmaker(engine)() as session:
            return store_measured(session, spec, measured, latency_runs=latency_runs)
    finally:
        engine.dispose()


@app.command()
def table2(as_json: JsonOpt = False) -> None:
    """The paper's Table 2 reproduced by the paper mode, beside the printed values."""
    from estimator.table2 import reproduce
    from estimator.units import format_gib, gib_value

    cells = reproduce()
    if as_json:
        rows = [
            {
                "column": c.column,
                "k": c.k,
                "nt": c.nt,
                "gib": gib_value(c.total_bytes),
                "total_bytes": c.total_bytes,
                "paper": c.paper,
                "matches": c.matches,
                "rounds_to_printed": c.rounds_to_printed,
                "known_misprint": c.known_misprint,
            }
            for c in cells
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Table 2 (GiB): engine (paper mode) / printed in the paper")
    table.add_column("2^k", justify="right")
    columns = list(dict.fromkeys(c.column for c in cells))
    nts = list(dict.fromkeys(c.nt for c in cells))
    for column in columns:
        for nt in nts:
            table.add_column(f"{column}\nN_T={nt}", justify="right")
    for k in dict.fromkeys(c.k for c in cells):
        marks = []
        for cell in (c for c in cells if c.k == k):
            if cell.known_misprint:
                mark = "✗ misprint"
            else:
                mark = ("✓" if cell.rounds_to_printed else "≈") if cell.matches else "✗"
            marks.append(f"{format_gib(cell.total_bytes)}\n{cell.paper} {mark}")
        table.add_row(str(2**k), *marks)
    console = Console(width=max(Console().width, 200))
    console.print(table)
    matched = sum(c.matches for c in cells)
    misprints = sum(c.known_misprint for c in cells)
    console.print(
        f"{matched}/{len(cells)} cells match (✓ rounds to the printed value, ≈ within its last"
        f" digit); {misprints} known misprints in the paper"
    )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def gate(context: typer.Context) -> None:
    """Exit 0 when every spec fits the device, 1 when any exceeds, 2 on invalid input.

    Takes SPEC... (--vram SIZE | --device NAME) [--mode paper|framework]
    [--format text|json|junit]; `phymem gate --help` lists them.
    """
    from app.gate_cli import main as gate_main

    raise typer.Exit(gate_main(list(context.args)))


def _solve(
    kind: str,
    spec_file: Path | None,
    flags: dict[str, Any],
    vram: str | None,
    device: str | None,
    mode: str,
    as_json: bool,
    basis: str = "upper",
) -> None:
    def body() -> None:
        from app.specio import parse_basis, verdict_calibration
        from estimator import search
        from estimator.spec import FamilySpec

        spec = _build_spec(spec_file, flags)
        vram_bytes, target = _vram(vram, device)
        chosen = _mode(mode)
        judged = parse_basis(basis)
        calibrated = verdict_calibration(device, chosen)
        if kind == "batch":
            answer = search.max_batch(spec, vram_bytes, chosen, judged, calibrated)
        elif not isinstance(spec, FamilySpec):
            raise UsageError(f"max-{kind} needs a family spec (--family)")
        else:
            solve = search.max_nt if kind == "nt" else search.max_k
            answer = solve(spec, vram_bytes, chosen, judged, calibrated)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        f"max_{kind}": answer,
                        "vram_bytes": vram_bytes,
                        "target": target,
                        "mode": chosen,
                        "basis": judged,
                        "calibration": "none"
                        if calibrated is None or calibrated.source == "none"
                        else f"{calibrated.source} ({calibrated.pairs} pairs)",
                    }
                )
            )
        elif answer == 0:
            typer.echo(f"nothing fits {target}: even {kind} = 1 exceeds it")
        else:
            typer.echo(f"largest {kind} that fits {target}: {answer}")

    run_command(body)


def _search_command(kind: str, summary: str, names: tuple[str, ...], **fixed: Any) -> None:
    """Register `max-<kind>`: the largest `kind` that fits, given the spec flags `names`."""

    @spec_flags(names, fixed=fixed)
    def command(
        spec_file: SpecArg = None,
        *,
        flags: dict[str, Any],
        vram: VramOpt = None,
        device: DeviceOpt = None,
        mode: ModeOpt = DEFAULT_MODE,
        basis: BasisOpt = "upper",
        as_json: JsonOpt = False,
    ) -> None:
        _solve(kind, spec_file, flags, vram, device, mode, as_json, basis)

    app.command(f"max-{kind}", help=summary)(command)


# The family flags the N_T and k searches take; each search starts its own value at 1.
_SEARCH_FLAGS = ("family", "k", "nt", "batch", "precision", "optimizer")
_search_command(
    "batch",
    "The largest B such that every batch 1..B fits a memory size or a device.",
    tuple(name for name in ALL_SPEC_FLAGS if name != "batch"),
)
_search_command(
    "nt",
    "The largest N_T (N_R = N_T) such that every N_T from 1 up fits.",
    tuple(name for name in _SEARCH_FLAGS if name != "nt"),
    nt=1,
)
_search_command(
    "k",
    "The largest bits per antenna k such that every k from 1 up fits.",
    tuple(name for name in _SEARCH_FLAGS if name != "k"),
    k=1,
)


@app.command()
def devices(as_json: JsonOpt = False) -> None:
    """The catalog of named devices and their memory."""
    from estimator.devices import DEVICES
    from estimator.units import format_gib

    if as_json:
        rows = [
            {"name": d.name, "label": d.label, "memory_bytes": d.memory_bytes}
            for d in DEVICES.values()
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    for d in DEVICES.values():
        typer.echo(f"{d.name:15} {format_gib(d.memory_bytes):>8} GiB  {d.label}")


def _register_optional_commands() -> None:
    """Service, database and worker commands live with the service and the worker."""
    from app.cli_phy import register as register_phy
    from app.cli_service import register as register_service
    from app.cli_train import register as register_train
    from app.cli_worker import register as register_worker

    register_service(app)
    register_worker(app)
    register_phy(app)
    register_train(app)


_register_optional_commands()


if __name__ == "__main__":
    from app.entry import main

    main()
