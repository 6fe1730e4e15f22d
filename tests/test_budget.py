"""The engine's budget hook (estimator.budget): pure, charged by the allocator replay as it
runs, and without effect on the numbers."""

from __future__ import annotations

import time

import pytest

from estimator.budget import CHARGE_EVERY, Budget, bounded
from estimator.engine import estimate
from estimator.errors import BudgetExceeded, Cancelled
from estimator.search import max_batch
from estimator.spec import FamilySpec, ModelSpec


def _model(layers: int) -> ModelSpec:
    dense = {"type": "dense", "units": 32, "activation": "relu"}
    last = {"type": "dense", "units": 16, "activation": "softmax"}
    return ModelSpec(
        input_kind="one_hot",
        input_size=16,
        layers=[dense] * (layers - 1) + [last],
        loss="categorical_crossentropy",
    )


def test_a_budget_changes_no_number() -> None:
    spec = FamilySpec(family="bae", k=4, nt=8, batch=64)
    budget = Budget(units=10**9, time_limit_s=60)
    with bounded(budget):
        charged = estimate(spec, "framework").to_dict()
    assert budget.spent > 1000  # the replay charged its events
    assert charged == estimate(spec, "framework").to_dict()


def test_an_estimate_stops_at_its_budget() -> None:
    budget = Budget(units=50_000)
    with bounded(budget), pytest.raises(BudgetExceeded, match="50,000 units"):
        estimate(_model(256), "framework")
    assert 50_000 < budget.spent <= 50_000 + 2 * CHARGE_EVERY + 256 * 64  # stopped there


def test_a_search_stops_when_called_off() -> None:
    called_off_at = time.monotonic() + 0.1
    budget = Budget(cancelled=lambda: time.monotonic() > called_off_at)
    start = time.perf_counter()
    with bounded(budget), pytest.raises(Cancelled):
        max_batch(_model(300), 80 * 2**30, "framework")
    assert time.perf_counter() - start < 1.0


def test_no_budget_no_limit() -> None:
    assert estimate(_model(8), "framework").total_bytes > 0
