"""Byte counts: exact sizes shown as GiB with 4 significant digits however large, sizes read
from text, and how far an estimate is from a measurement."""

from __future__ import annotations

import re
import sys
from decimal import Context, Decimal

MIB = 2**20
GIB = 2**30
_CONTEXT = Context(prec=40)
_FLOAT_LIMIT = Decimal("1e300")
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def gib_decimal(size: int) -> Decimal:
    return _CONTEXT.divide(Decimal(size), Decimal(GIB))


def format_gib(size: int, digits: int = 4) -> str:
    """'800.9', '0.7416', '1.879e+111': 4 significant digits, scientific when huge."""
    value = gib_decimal(size)
    if value == 0:
        return "0"
    text = format(value, f".{digits}g")
    if "e" not in text and value >= 10**6:
        text = format(value, f".{digits - 1}e")
    return text


def gib_value(size: int) -> float | str:
    """GiB as a JSON number, or as a string in scientific notation beyond float range."""
    value = gib_decimal(size)
    if value < _FLOAT_LIMIT:
        return float(value)
    return format(value, ".6e")


def parse_size(text: str) -> int:
    """'80GiB', '40 GB', '1.5TiB', '17179869184' -> bytes (GB = 10^9, GiB = 2^30)."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (try 80GiB, 40GB or a byte count)")
    size = Decimal(match.group(1)) * _UNITS[unit]
    if size <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return int(size)


def error_pct(estimate_bytes: int, measured_bytes: int) -> float:
    """(estimate - measured) / measured in percent: positive when the estimate is above.

    Exact: integer arithmetic rounded once to a double, so byte counts of any length work
    (paper-mode estimates can have hundreds of digits); an error beyond a double's range is
    the largest double of its sign.
    """
    difference = (estimate_bytes - measured_bytes) * 100
    try:
        return difference / measured_bytes
    except OverflowError:
        negative = (difference < 0) != (measured_bytes < 0)
        return -sys.float_info.max if negative else sys.float_info.max


def reported_error_pct(estimate_bytes: int | None, measured_bytes: int | None) -> float | None:
    """`error_pct` to 3 decimals as the API and the CLI report it; None without a measurement."""
    if estimate_bytes is None or not measured_bytes:
        return None
    return round(error_pct(estimate_bytes, measured_bytes), 3)
