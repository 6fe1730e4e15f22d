"""Specs and sizes from files and flags, with one-line errors: shared by every CLI command.

Kept free of typer and rich so the gate's fast path can use it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from estimator.calibration import Calibration
    from estimator.engine import Mode
    from estimator.gate import Basis
    from estimator.spec import FamilySpec, ModelSpec


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


def validation_message(error: Exception) -> str:
    """A pydantic error as 'field: message; ...' (the union's tag left out)."""
    from pydantic import ValidationError

    if not isinstance(error, ValidationError):
        return str(error)
    parts = []
    for item in error.errors():
        location = item["loc"]
        if location and location[0] in ("family", "model", *SEED_PAPER_FAMILIES):
            location = location[1:]
        field = ".".join(str(part) for part in location)
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


# One `key: value` line of a flat mapping whose value is a decimal integer or a bare word.
_FLAT_LINE = re.compile(r"([A-Za-z_]\w*):[ ]+(0|-?[1-9][0-9]*|[A-Za-z][\w-]*)[ ]*", re.ASCII)
# Words YAML 1.1 reads as booleans or null (PyYAML takes a subset; these and y/n all go to it).
_YAML_WORDS = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null"})


def read_flat_yaml(text: str) -> dict[str, Any] | None:
    """The mapping of a YAML file of flat `key: integer-or-word` lines, else None.

    Most family specs look like that (`family: bae`, `k: 6`), and such lines mean the same in
    every YAML version. Importing PyYAML costs the gate a sixth of its start-up, so these
    files are read here and anything else (comments after values, quotes, lists, floats,
    booleans, ...) by PyYAML; a test checks that both read the same mapping.
    """
    data: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _FLAT_LINE.fullmatch(line)
        if match is None:
            return None
        key, value = match.groups()
        if key in data or {key.lower(), value.lower()} & _YAML_WORDS:
            return None
        data[key] = value if value[0].isalpha() else int(value)
    return data or None


def read_spec_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read spec file {path}: {error.strerror}") from None
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        import json

        try:
            data = json.loads(text)
        except ValueError as error:
            raise UsageError(f"{path}: not valid JSON ({error})") from None
    else:
        data = read_flat_yaml(text)
        if data is None:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise UsageError(f"{path}: not valid YAML ({error.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a spec must be a mapping of fields")
    return data


def _spec_data(path: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = read_spec_file(path) if path else {}
    data.pop("mode", None)
    data.update({key: value for key, value in flags.items() if value is not None})
    if "family" not in data and "layers" not in data:
        raise UsageError(
            "give --family (with --k and --nt) or a spec file with 'family' or 'layers'"
        )
    return data


SEED_PAPER_FAMILIES = ("csinet", "detnet")


def seed_paper_model(data: dict[str, Any], label: str) -> ModelSpec:
    """CsiNet (`gamma`) or DetNet (`nt` = K, `nr` = N, `layers` = L) as its layer list,
    read by the pydantic spec the API reads them with (estimator.spec.SeedFamilySpec)."""
    from pydantic import TypeAdapter, ValidationError

    from estimator.spec import SeedFamilySpec

    try:
        spec = TypeAdapter(SeedFamilySpec).validate_python(data)
    except ValidationError as error:
        raise UsageError(f"{label}: {validation_message(error)}") from None
    return spec.expand()


def build_spec(path: Path | None, flags: dict[str, Any]) -> FamilySpec | ModelSpec:
    """A validated spec from a file, flags, or both (flags win)."""
    data = _spec_data(path, flags)
    label = str(path) if path else "spec"
    if data.get("family") in SEED_PAPER_FAMILIES:
        return seed_paper_model(data, label)
    return _validated(data, label)


def read_spec_quickly(path: Path) -> FamilySpec | ModelSpec:
    """A spec from a file, without importing pydantic when the file is clean and valid.

    The gate's start-up path: `estimator.records.accept` takes data that needs no
    coercion; anything else goes through the pydantic spec, which words the error.
    """
    from estimator.records import accept

    data = _spec_data(path, {})
    if data.get("family") in SEED_PAPER_FAMILIES:
        return seed_paper_model(data, str(path))
    return accept(data) or _validated(data, str(path))


def _validated(data: dict[str, Any], label: str) -> FamilySpec | ModelSpec:
    from pydantic import TypeAdapter, ValidationError

    from estimator.spec import Spec

    try:
        spec: FamilySpec | ModelSpec = TypeAdapter(Spec).validate_python(data)
    except ValidationError as error:
        raise UsageError(f"{label}: {validation_message(error)}") from None
    return spec


def parse_mode(value: str) -> Mode:
    from estimator.engine import MODES

    if value not in MODES:
        raise UsageError(f"--mode: must be one of {', '.join(MODES)}, not {value!r}")
    return value


def parse_basis(value: str) -> Basis:
    from estimator.gate import parse_basis as parse

    try:
        return parse(value)
    except ValueError as error:
        raise UsageError(f"--{error}") from None


def verdict_calibration(device: str | None, mode: Mode) -> Calibration | None:
    """A named device's prior calibration (estimator.gate's rule for every surface)."""
    from estimator.devices import get_device
    from estimator.gate import device_calibration

    if device is None:
        return None
    try:
        name = get_device(device).name
    except ValueError as error:
        raise UsageError(f"--device: {error}") from None
    return device_calibration(name, mode)


def resolve_vram(vram: str | None, device: str | None) -> tuple[int, str]:
    """Bytes and a label from exactly one of --vram or --device."""
    from estimator.devices import get_device
    from estimator.units import parse_size

    if (vram is None) == (device is None):
        raise UsageError("give exactly one of --vram or --device")
    try:
        if device is not None:
            found = get_device(device)
            return found.memory_bytes, found.name
        assert vram is not None
        return parse_size(vram), vram
    except ValueError as error:
        option = "--device" if device is not None else "--vram"
        raise UsageError(f"{option}: {error}") from None
