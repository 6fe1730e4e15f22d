"""The committed accuracy table (benchmarks/accuracy.csv) matches the engine as it is now.

The table pairs each configuration's measured peak with the engine's estimates at the time
it was written. The columns are read by the header: every column named like a spec field
(family, k, nt, batch, precision, optimizer, ...) goes into the spec, and every
`<mode>_bytes` column is the engine's total in that mode. An engine change that moves a
number fails here until the table is measured again (`python -m benchmarks.accuracy`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from estimator.engine import MODES, estimate
from estimator.spec import FamilySpec
from estimator.units import error_pct

CSV = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.csv"


def _rows() -> list[dict[str, str]]:
    with CSV.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _value(text: str) -> Any:
    return int(text) if text.lstrip("-").isdigit() else text


ROWS = _rows()
SPEC_COLUMNS = [name for name in (ROWS[0] if ROWS else {}) if name in FamilySpec.model_fields]
MODE_COLUMNS = [mode for mode in MODES if ROWS and f"{mode}_bytes" in ROWS[0]]


def test_the_table_has_configurations_and_the_framework_column() -> None:
    assert ROWS, f"{CSV} has no rows"
    assert {"family", "k", "nt"} <= set(SPEC_COLUMNS), SPEC_COLUMNS
    assert "framework" in MODE_COLUMNS and "measured_bytes" in ROWS[0]


@pytest.mark.parametrize("row", ROWS, ids=[row.get("config", str(i)) for i, row in enumerate(ROWS)])
def test_each_row_is_the_engines_estimate(row: dict[str, str]) -> None:
    spec = FamilySpec(**{name: _value(row[name]) for name in SPEC_COLUMNS if row[name] != ""})
    measured = int(row["measured_bytes"])
    for mode in MODE_COLUMNS:
        assert int(row[f"{mode}_bytes"]) == estimate(spec, mode).total_bytes, mode
        column = f"{mode}_error_pct"
        if row.get(column):
            recomputed = error_pct(int(row[f"{mode}_bytes"]), measured)
            assert float(row[column]) == pytest.approx(recomputed, abs=0.001), column
