"""Specs as plain records, accepted against the spec's JSON schema without importing pydantic.

`phymem gate` starts once per CI run, and importing pydantic alone takes longer than
Python's own start-up. So the gate first offers the parsed file to `accept`: a strict check
of already-clean data (JSON/YAML's native ints, floats, strings and booleans, nothing to
coerce) against `spec.schema.json`, which is generated from the pydantic spec
(`estimator.spec`; a test keeps the two identical). What `accept` does not recognise as
valid it returns as None, and the caller hands the data to the pydantic spec, which coerces
it or reports the error: error messages have one source, and the fast path never accepts
what pydantic would reject.

Families expand into records too (`estimator.families`), so the engine reads specs by
attribute and never needs pydantic at run time. Records are typed as the pydantic classes
they mirror: they carry the same fields, defaults filled in, and the two methods of
pydantic's model API the engine calls, `model_dump` and `model_copy`.
"""

from __future__ import annotations

import json
from functools import cache
from math import isfinite
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from estimator.layers import resolve
from estimator.spec_base import check_message_space, spec_kind

if TYPE_CHECKING:
    from estimator.spec import FamilySpec, ModelSpec

SCHEMA_PATH = Path(__file__).with_name("spec.schema.json")


@cache
def schema() -> dict[str, Any]:
    """The spec's JSON schema, as `TypeAdapter(estimator.spec.Spec).json_schema()` writes it."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def _definition(name: str) -> dict[str, Any]:
    found: dict[str, Any] = schema()["$defs"][name]
    return found


@cache
def _defaults(name: str) -> dict[str, Any]:
    properties = _definition(name)["properties"]
    return {key: value["default"] for key, value in properties.items() if "default" in value}


class Record:
    """A spec or a layer as read-only attributes."""

    __slots__ = ("_fields", "_kind")

    def __init__(self, kind: str, fields: dict[str, Any]) -> None:
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"{self._kind} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._kind} is read-only")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self._kind, self._fields) == (other._kind, other._fields)

    def __hash__(self) -> int:
        return hash(json.dumps(self.model_dump(), sort_keys=True))

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self._fields.items())
        return f"{self._kind}({fields})"

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {key: _dump(value) for key, value in self._fields.items()}

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Record:
        return Record(self._kind, {**self._fields, **(update or {})})


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.model_dump()
    if isinstance(value, list):
        return [_dump(item) for item in value]
    return value


def record(kind: str, **fields: Any) -> Record:
    """A trusted record (built by this package, not read from a user): defaults filled in."""
    return Record(kind, {**_defaults(kind), **fields})


def is_family(spec: FamilySpec | ModelSpec) -> TypeGuard[FamilySpec]:
    """True for a family spec (pydantic or record), False for a generic layer list."""
    return hasattr(spec, "family")


def canonical_json(spec: FamilySpec | ModelSpec) -> str:
    """Stable JSON of a spec with defaults filled in, so equal specs hash equal."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def spec_hash(spec: FamilySpec | ModelSpec) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


_DEFINITIONS = {"family": "FamilySpec", "model": "ModelSpec"}  # the schema's $defs


class _Rejected(Exception):
    """Not recognisably valid: the pydantic spec decides (and words the error)."""


def accept(data: Any) -> FamilySpec | ModelSpec | None:
    """A record when `data` is a valid spec needing no coercion; None when pydantic must decide."""
    if not isinstance(data, dict):
        return None
    kind = _DEFINITIONS[spec_kind(data)]
    try:
        spec = _object(kind, data)
    except _Rejected:
        return None
    try:
        if kind == "FamilySpec":
            check_message_space(spec.family, spec.k, spec.nt)
            return cast("FamilySpec", spec)
        resolve(cast("ModelSpec", spec))
    except ValueError:
        return None
    return cast("ModelSpec", spec)


def _object(kind: str, data: Any) -> Record:
    if not isinstance(data, dict):
        raise _Rejected
    definition = _definition(kind)
    properties: dict[str, Any] = definition["properties"]
    if not set(data) <= set(properties) or not set(definition.get("required", ())) <= set(data):
        raise _Rejected
    fields = {
        key: _value(rule, data[key]) if key in data else rule["default"]
        for key, rule in properties.items()
    }
    return Record(kind, fields)


def _value(rule: dict[str, Any], value: Any) -> Any:
    """The value as pydantic would store it, for the JSON schema subset the spec uses."""
    if "$ref" in rule:
        return _object(rule["$ref"].rsplit("/", 1)[-1], value)
    if "oneOf" in rule:  # a discriminated union: the tag names the one to check
        if not isinstance(value, dict):
            raise _Rejected
        mapping = rule["discriminator"]["mapping"]
        tag = value.get(rule["discriminator"]["propertyName"])
        if not isinstance(tag, str) or tag not in mapping:
            raise _Rejected
        return _object(mapping[tag].rsplit("/", 1)[-1], value)
    if "anyOf" in rule:
        for choice in rule["anyOf"]:
            try:
                return _value(choice, value)
            except _Rejected:
                continue
        raise _Rejected
    if "const" in rule:
        if type(value) is not type(rule["const"]) or value != rule["const"]:
            raise _Rejected
        return value
    if "enum" in rule:
        if not isinstance(value, str) or value not in rule["enum"]:
            raise _Rejected
        return value
    return _typed(rule, value)


def _typed(rule: dict[str, Any], value: Any) -> Any:
    kind = rule.get("type")
    if kind == "null" and value is None:
        return None
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "array" and isinstance(value, list):
        if not rule.get("minItems", 0) <= len(value) <= rule.get("maxItems", len(value)):
            raise _Rejected
        return [_value(rule["items"], item) for item in value]
    if kind == "integer" and type(value) is int:
        return _bounded(rule, value)
    if kind == "number" and type(value) in (int, float) and isfinite(value):
        return _bounded(rule, float(value))
    raise _Rejected


def _bounded(rule: dict[str, Any], value: int | float) -> int | float:
    if "minimum" in rule and value < rule["minimum"]:
        raise _Rejected
    if "maximum" in rule and value > rule["maximum"]:
        raise _Rejected
    if "exclusiveMinimum" in rule and value <= rule["exclusiveMinimum"]:
        raise _Rejected
    if "exclusiveMaximum" in rule and value >= rule["exclusiveMaximum"]:
        raise _Rejected
    return value
