"""The committed accuracy table (benchmarks/accuracy.csv) matches the engine as it is now.

The table pairs each configuration's measured peak with the engine's estimates at the time
it was written; the columns are read by the header. The spec of a row is its `spec` column
(a spec as JSON) when there is one, else the columns named like spec fields (family, k, nt,
batch, precision, optimizer, ...). The engine's numbers are the `framework_bytes` (or
`peak_bytes`), `upper_bytes` and `paper_bytes` columns, and the error columns are
(estimate - measured) / measured. An engine change that moves a number fails here until
the table is measured again (`python -m benchmarks.accuracy`).

Mixed-precision estimates depend on the host: whether TF runs a float16 MatMul in oneDNN
or through float32 copies is read off the CPU's flags
(estimator.framework.float16_matmul_in_float32). The table was measured and estimated on a
host with AVX512-FP16 and AMX (benchmarks/accuracy.md, "Mixed precision on this CPU"), so
the rows are replayed with that host's kernel path wherever the test runs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from estimator.engine import Estimate, Mode, estimate
from estimator.spec import AnySpec, FamilySpec, Spec
from estimator.units import error_pct

CSV = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.csv"
TABLE_HOST_FLOAT16_VIA_FLOAT32 = False  # the table's host ran float16 MatMuls in oneDNN
# column -> (mode, what of that mode's estimate)
NUMBERS: dict[str, tuple[Mode, str]] = {
    "framework_bytes": ("framework", "total_bytes"),
    "peak_bytes": ("framework", "total_bytes"),
    "upper_bytes": ("framework", "upper_bytes"),
    "paper_bytes": ("paper", "total_bytes"),
}
ERRORS = {"framework_error_pct": "framework_bytes", "error_pct": "peak_bytes",
          "paper_error_pct": "paper_bytes"}  # fmt: skip

with CSV.open(newline="") as handle:
    ROWS = list(csv.DictReader(handle))
HEADER = list(ROWS[0]) if ROWS else []


def _value(text: str) -> Any:
    return int(text) if text.lstrip("-").isdigit() else text


def spec_of(row: dict[str, str]) -> AnySpec:
    if row.get("spec"):
        spec: AnySpec = TypeAdapter(Spec).validate_python(json.loads(row["spec"]))
        return spec
    fields = {name: _value(row[name]) for name in FamilySpec.model_fields if row.get(name)}
    return FamilySpec(**fields)


def test_the_table_names_its_specs_and_the_framework_numbers() -> None:
    assert ROWS, f"{CSV} has no rows"
    assert "spec" in HEADER or {"family", "k", "nt"} <= set(HEADER), (
        f"{CSV.name} needs a `spec` column (the spec as JSON) or family/k/nt columns: {HEADER}"
    )
    assert {"framework_bytes", "peak_bytes"} & set(HEADER) and "measured_bytes" in HEADER


@pytest.mark.parametrize("row", ROWS, ids=[row.get("config", str(i)) for i, row in enumerate(ROWS)])
def test_each_row_is_the_engines_estimate(
    row: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import estimator.framework

    monkeypatch.setattr(
        estimator.framework,
        "float16_matmul_in_float32",
        lambda: TABLE_HOST_FLOAT16_VIA_FLOAT32,
    )
    spec = spec_of(row)
    estimates: dict[str, Estimate] = {}
    for column in set(NUMBERS) & set(HEADER):
        mode, attribute = NUMBERS[column]
        found = estimates.setdefault(mode, estimate(spec, mode))
        assert int(row[column]) == getattr(found, attribute), column
    for column in set(ERRORS) & set(HEADER):
        if row[column] and row.get("measured_bytes"):
            recomputed = error_pct(int(row[ERRORS[column]]), int(row["measured_bytes"]))
            assert float(row[column]) == pytest.approx(recomputed, abs=0.001), column
