"""`phymem gate`: the CI gate, on a start-up path without typer or rich.

CI systems call the gate once per commit, so its cold start matters: `app.entry` sends
`phymem gate ...` here directly; the typer app's `gate` command calls the same `run_gate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from app.exits import EXIT_INVALID, report_fault, set_debug
from app.specio import UsageError, parse_mode, resolve_vram
from estimator.engine import DEFAULT_MODE
from estimator.errors import InvalidInput

EXIT_FITS, EXIT_EXCEEDS = 0, 1
FORMATS = ("text", "json", "junit")


def run_gate(
    spec_files: list[Path],
    vram: str | None,
    device: str | None,
    mode: str,
    output_format: str,
    basis: str = "upper",
) -> tuple[int, str]:
    """Exit code and report; raises UsageError on bad input.

    A named device is judged with its prior calibration (estimator.gate's one rule)."""
    from app.specio import parse_basis, read_spec_quickly, verdict_calibration
    from estimator import gate

    if output_format not in FORMATS:
        raise UsageError(f"--format: must be text, json or junit, not {output_format!r}")
    if not spec_files:
        raise UsageError("give at least one spec file")
    vram_bytes, _ = resolve_vram(vram, device)
    chosen = parse_mode(mode)
    judged = parse_basis(basis)
    calibrated = verdict_calibration(device, chosen)
    verdicts = [
        gate.check(str(path), read_spec_quickly(path), vram_bytes, chosen, calibrated, judged)
        for path in spec_files
    ]
    render = {"text": gate.render_text, "json": gate.render_json, "junit": gate.render_junit}
    code = EXIT_FITS if all(v.fits for v in verdicts) else EXIT_EXCEEDS
    return code, render[output_format](verdicts)


def parser(with_help: bool = True) -> argparse.ArgumentParser:
    gate = argparse.ArgumentParser(
        prog="phymem gate",
        add_help=with_help,  # the help option costs the start-up a terminal-size lookup
        description="Exit 0 when every spec fits the device, 1 when any exceeds, "
        "2 on invalid input, 3 on an internal error.",
    )
    gate.add_argument("spec_files", nargs="*", type=Path, help="Spec files (YAML or JSON).")
    gate.add_argument("--vram", help="Memory size, e.g. 80GiB or 40GB.")
    gate.add_argument("--device", help="A device name, e.g. a100-80gb.")
    gate.add_argument(
        "--mode",
        default=DEFAULT_MODE,
        help="framework (traced on TensorFlow 2.21's CPU BFC allocator; on a GPU, that model "
        "plus the device's calibrated context) | paper",
    )
    gate.add_argument(
        "--basis",
        default="upper",
        help="upper (default: upper_bytes, a bound no execution order exceeds) | expected "
        "(peak_bytes)",
    )
    gate.add_argument("--format", dest="output_format", default="text", help="text|json|junit")
    gate.add_argument("--debug", action="store_true", help="Traceback of an internal error.")
    return gate


def main(argv: list[str]) -> int:
    arguments = parser(with_help=bool({"-h", "--help"} & set(argv)))
    arguments.error = _usage_error  # type: ignore[method-assign]
    try:
        options = arguments.parse_args(argv)
        set_debug(options.debug)
        code, report = run_gate(
            options.spec_files,
            options.vram,
            options.device,
            options.mode,
            options.output_format,
            options.basis,
        )
    except UsageError as error:
        print(f"phymem: error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except InvalidInput as error:
        print(f"phymem: error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as error:
        return report_fault("phymem gate", error)
    print(report)
    return code


def _usage_error(message: str) -> NoReturn:
    raise UsageError(message)
