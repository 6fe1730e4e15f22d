"""`phymem ber`: the BER curve of a classical baseline (Gray QAM, ZF / MMSE / ML detection).

Only typer at module level; numpy and scipy load inside the command, TensorFlow never.
Numeric flags are parsed here rather than by click so that every bad value gets the same
one-line error naming its flag, and exit status 2.
"""

import json
import math
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from profilers.phy.montecarlo import BerPoint

EXIT_INVALID = 2


class FlagError(ValueError):
    """A bad command-line value; the message starts with the flag."""


def _flag_message(error: ValueError) -> str:
    """Library errors read 'field: ...'; on the command line the field is a flag."""
    text = str(error)
    field, sep, rest = text.partition(": ")
    if sep and field.replace("_", "").isalnum() and not field.startswith("--"):
        return f"--{field.replace('_', '-')}: {rest}"
    return text


def _int(flag: str, text: str, minimum: int) -> int:
    """An integer flag; '1e7' style is accepted when it is a whole number."""
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise FlagError(f"{flag}: expected an integer, got {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise FlagError(f"{flag}: expected an integer, got {text!r}")
    if int(value) < minimum:
        raise FlagError(f"{flag}: must be at least {minimum}, got {text}")
    return int(value)


def _float(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FlagError(f"{flag}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise FlagError(f"{flag}: expected a finite number, got {text!r}")
    return value


DetectorOpt = Annotated[str, typer.Option("--detector", help="zf | mmse | ml")]
BitsOpt = Annotated[str, typer.Option("--k", metavar="INT", help="Bits per antenna (2^k-QAM).")]
NtOpt = Annotated[str, typer.Option("--nt", metavar="INT", help="Transmit antennas.")]
NrOpt = Annotated[
    str | None,
    typer.Option("--nr", metavar="INT", help="Receive antennas (rayleigh; default N_T)."),
]
ChannelOpt = Annotated[str, typer.Option("--channel", help="awgn | cross | rayleigh")]
CrossOpt = Annotated[
    str, typer.Option("--cross", metavar="FLOAT", help="Off-diagonal gain of `cross`.")
]
GridOpt = Annotated[
    str, typer.Option("--ebn0", help="Eb/N0 grid in dB: start:stop:step (stop included) or a,b,c.")
]
TargetOpt = Annotated[
    str, typer.Option("--target-errors", metavar="INT", help="Bit errors per point.")
]
MaxBitsOpt = Annotated[str, typer.Option("--max-bits", metavar="INT", help="Bit budget per point.")]
SeedOpt = Annotated[str, typer.Option("--seed", metavar="INT", help="Random seed.")]
CandidatesOpt = Annotated[
    str,
    typer.Option("--max-candidates", metavar="INT", help="ML refuses above this many vectors."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def ber_command(
    detector: DetectorOpt = "mmse",
    k: BitsOpt = "2",
    nt: NtOpt = "2",
    nr: NrOpt = None,
    channel: ChannelOpt = "awgn",
    cross: CrossOpt = "0.3",
    ebn0: GridOpt = "0:12:1",
    target_errors: TargetOpt = "1000",
    max_bits: MaxBitsOpt = "10000000",
    seed: SeedOpt = "0",
    max_candidates: CandidatesOpt = "65536",
    as_json: JsonOpt = False,
) -> None:
    """BER, SER and message error rate vs Eb/N0 of uncoded Gray QAM with ZF, MMSE or ML.

    Monte Carlo per point until --target-errors bit errors or --max-bits bits, with a 95%
    Clopper-Pearson interval; the sweep stops after the first point with no error.
    """
    if "numpy" not in sys.modules:
        # The products here are small (inner dimension 2 N_R); OpenBLAS's threads only spin
        # on them: single-threaded was 1.5-11x faster on a busy machine (benchmarks/RESULTS.md).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        rows, header = _run_ber(
            detector,
            k,
            nt,
            nr,
            channel,
            cross,
            ebn0,
            target_errors,
            max_bits,
            seed,
            max_candidates,
            as_json,
        )
    except ValueError as error:
        typer.echo(f"phymem: error: {_flag_message(error)}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        typer.echo(json.dumps({**header, "rows": rows}, indent=2))


def _run_ber(
    detector: str,
    k_text: str,
    nt_text: str,
    nr_text: str | None,
    channel: str,
    cross_text: str,
    grid_text: str,
    target_text: str,
    max_bits_text: str,
    seed_text: str,
    candidates_text: str,
    as_json: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from profilers.phy.baselines import baseline_link
    from profilers.phy.channels import ChannelSpec
    from profilers.phy.montecarlo import parse_grid, simulate
    from profilers.phy.qam import qam

    k = _int("--k", k_text, 1)
    nt = _int("--nt", nt_text, 1)
    nr = nt if nr_text is None else _int("--nr", nr_text, 1)
    cross = _float("--cross", cross_text)
    grid = parse_grid(grid_text)
    target = _int("--target-errors", target_text, 1)
    budget = _int("--max-bits", max_bits_text, 1)
    seed = _int("--seed", seed_text, 0)
    limit = _int("--max-candidates", candidates_text, 1)
    spec = ChannelSpec(channel, nt, nr, cross=cross)  # type: ignore[arg-type]
    link = baseline_link(detector, k, spec, max_candidates=limit)
    header: dict[str, Any] = {
        "detector": detector,
        "k": k,
        "constellation": qam(k).name,
        "channel": channel,
        "nt": nt,
        "nr": nr,
        "cross": cross if channel == "cross" else None,
        "ebn0_db": grid,
        "target_errors": target,
        "max_bits": budget,
        "seed": seed,
    }
    if not as_json:
        _print_table_head(header, cross)
    points = simulate(
        link,
        grid,
        detector=detector,
        target_errors=target,
        max_bits=budget,
        seed=seed,
        on_point=None if as_json else _print_point,
    )
    return [p.row() for p in points], header


def _print_table_head(header: dict[str, Any], cross: float) -> None:
    channel = header["channel"]
    where = f"{channel} {cross}" if channel == "cross" else channel
    typer.echo(
        f"{header['detector'].upper()}, {header['constellation']}, "
        f"{header['nt']}x{header['nr']} {where}, seed {header['seed']}"
    )
    typer.echo(
        "  Eb/N0         BER   95% interval                  bits   errors         SER"
        "        BLER  energy"
    )


def _print_point(point: "BerPoint") -> None:
    typer.echo(
        f"{point.ebn0_db:7.2f}  {point.ber:10.4e}  [{point.ci_low:.3e}, {point.ci_high:.3e}]"
        f"  {point.bits:>10}  {point.bit_errors:>7}  {point.ser:10.4e}  {point.bler:10.4e}"
        f"  {point.tx_energy:6.3f}"
    )


def register(app: typer.Typer) -> None:
    app.command("ber")(ber_command)
