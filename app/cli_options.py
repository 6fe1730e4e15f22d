"""Options shared by the `phymem` commands, and `spec_flags`, which gives a command the flags
that describe a spec.

Only typer at module level, so every command module can import this one without loading the
estimator, rich or the service.
"""

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

FamilyOpt = Annotated[
    str | None, typer.Option(help="ae | ae-embedding | bae | tanh-bae | csinet | detnet")
]
GammaOpt = Annotated[str | None, typer.Option(help="CsiNet compression ratio: 1/4 .. 1/64.")]
LayersOpt = Annotated[int | None, typer.Option(help="DetNet unfolded layers L (default 90).")]
KOpt = Annotated[int | None, typer.Option("--k", help="Bits per antenna.")]
NtOpt = Annotated[int | None, typer.Option("--nt", help="Transmit antennas.")]
NrOpt = Annotated[int | None, typer.Option("--nr", help="Receive antennas (default N_T).")]
NOpt = Annotated[int | None, typer.Option("--n", help="Channel uses.")]
HtOpt = Annotated[int | None, typer.Option("--ht", help="Encoder width H_T.")]
HrOpt = Annotated[int | None, typer.Option("--hr", help="Decoder width H_R.")]
BatchOpt = Annotated[int | None, typer.Option(help="Batch size.")]
PrecisionOpt = Annotated[str | None, typer.Option(help="fp32 | mixed")]
OptimizerOpt = Annotated[str | None, typer.Option(help="none | sgd | momentum | adam")]
EmbeddingOpt = Annotated[int | None, typer.Option(help="Embedding size E (ae-embedding).")]
ModeOpt = Annotated[str, typer.Option(help="paper | framework")]
BasisOpt = Annotated[
    str,
    typer.Option(
        help="What a fit is judged on: upper (default: the estimate's upper_bytes, a bound no "
        "execution order exceeds) | expected (peak_bytes, the layout most processes take)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SpecArg = Annotated[
    Path | None, typer.Argument(help="A YAML or JSON spec file (instead of flags).")
]
# Queueing a command's work on the service instead of running it here.
DEFAULT_URL = "http://127.0.0.1:8000"
SubmitOpt = Annotated[bool, typer.Option("--submit", help="Queue it on the service instead.")]
UrlOpt = Annotated[str, typer.Option(envvar="PHYMEM_URL", help="Service URL (with --submit).")]
ApiKeyOpt = Annotated[
    str | None, typer.Option(envvar="PHYMEM_API_KEY", help="X-API-Key (with --submit).")
]
DeviceClassOpt = Annotated[
    str, typer.Option(help="Device class to run on (with --submit), e.g. a100-80gb.")
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="With --submit: wait for the result.")]
VramOpt = Annotated[str | None, typer.Option(help="Memory size, e.g. 80GiB or 40GB.")]
DeviceOpt = Annotated[str | None, typer.Option(help="A device name, e.g. a100-80gb.")]

# The flags that describe a spec, in the order `--help` lists them.
SPEC_OPTIONS: dict[str, Any] = {
    "family": FamilyOpt,
    "k": KOpt,
    "nt": NtOpt,
    "nr": NrOpt,
    "n": NOpt,
    "ht": HtOpt,
    "hr": HrOpt,
    "batch": BatchOpt,
    "precision": PrecisionOpt,
    "optimizer": OptimizerOpt,
    "embedding_size": EmbeddingOpt,
    "gamma": GammaOpt,
    "layers": LayersOpt,
}
ALL_SPEC_FLAGS = tuple(SPEC_OPTIONS)

Command = Callable[..., Any]


def _keyword_option(name: str) -> inspect.Parameter:
    kind = inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(name, kind, default=None, annotation=SPEC_OPTIONS[name])


def spec_flags(
    names: tuple[str, ...] = ALL_SPEC_FLAGS, fixed: Mapping[str, Any] | None = None
) -> Callable[[Command], Command]:
    """Give a command the spec options `names`, handed to it as one dict, `flags`.

    The command declares a keyword-only parameter `flags: dict[str, Any]`; typer sees the
    options `names` in its place, and the command receives their values (each None when not
    given) merged with `fixed`, the values it sets itself (`max-nt` searches N_T from 1).
    The flags are written once here instead of once per command.
    """
    unknown = set(names) - set(SPEC_OPTIONS)
    if unknown:
        raise ValueError(f"not spec options: {sorted(unknown)}")

    def decorate(command: Command) -> Command:
        hints = typing.get_type_hints(command, include_extras=True)
        parameters: list[inspect.Parameter] = []
        for parameter in inspect.signature(command).parameters.values():
            if parameter.name != "flags":
                parameters.append(parameter.replace(annotation=hints[parameter.name]))
                continue
            parameters.extend(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=SPEC_OPTIONS[name],
                )
                for name in names
            )

        @functools.wraps(command)
        def with_flags(**values: Any) -> Any:
            flags = {name: values.pop(name) for name in names} | dict(fixed or {})
            return command(flags=flags, **values)

        with_flags.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        with_flags.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_flags

    return decorate
