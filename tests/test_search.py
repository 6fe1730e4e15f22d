"""The inverse searches are exact and safe: checked against brute-force scans, both modes.

`max_batch` must return the largest B such that every batch 1..B fits by the chosen basis,
even where the framework mode's expected peak falls as the batch grows; the same for
`max_nt` and `max_k` along their axes.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estimator.engine import cached_plan
from estimator.gate import basis_bytes
from estimator.search import MAX_EXPECTED_SCAN, max_batch, max_k, max_nt
from estimator.spec import FamilySpec

SCAN = 24  # batches brute-forced per example

small_families = st.builds(
    FamilySpec,
    family=st.sampled_from(["ae", "ae-embedding", "bae", "tanh-bae"]),
    k=st.integers(1, 3),
    nt=st.integers(1, 3),
    ht=st.integers(8, 96),
    hr=st.integers(8, 160),
    optimizer=st.sampled_from(["none", "sgd", "momentum", "adam"]),
    precision=st.sampled_from(["fp32", "mixed"]),
)


def brute_force(needs: list[int], vram: int) -> int:
    """1-based: the last n such that needs[0..n-1] all fit."""
    for index, need in enumerate(needs):
        if need > vram:
            return index
    return len(needs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=small_families,
    mode=st.sampled_from(["paper", "framework"]),
    basis=st.sampled_from(["upper", "expected"]),
    pick=st.integers(0, SCAN - 2),
    slack=st.floats(0, 1),
)
def test_max_batch_matches_a_brute_force_scan(spec, mode, basis, pick, slack):
    plan = cached_plan(spec, mode)
    needs = [basis_bytes(plan, batch, basis) for batch in range(1, SCAN + 1)]
    # a memory between two needs, so the answer lies inside the scanned range
    ordered = sorted(needs)
    low, high = ordered[pick], ordered[pick + 1]
    vram = low + int((high - low) * slack)
    expected = brute_force(needs, vram)
    if expected == SCAN:
        return  # the answer lies beyond the scanned range
    assert max_batch(spec, vram, mode, basis) == expected


def test_framework_expected_peak_is_not_monotone_but_the_search_is_safe():
    """ae k=4 N_T=2: the expected peak dips (B=118 needs less than B=117), so a bisection
    on it answered a batch with smaller batches that do not fit."""
    spec = FamilySpec(family="ae", k=4, nt=2)
    plan = cached_plan(spec, "framework")
    needs = [plan.total_bytes(batch) for batch in range(100, 140)]
    assert any(later < earlier for earlier, later in itertools.pairwise(needs))
    vram = plan.total_bytes(130)
    for basis in ("upper", "expected"):
        try:
            answer = max_batch(spec, vram, "framework", basis)
        except ValueError as error:
            assert basis == "expected" and str(MAX_EXPECTED_SCAN) in str(error)
            continue
        assert all(basis_bytes(plan, b, basis) <= vram for b in range(1, answer + 1))
        assert basis_bytes(plan, answer + 1, basis) > vram


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(["ae", "bae", "tanh-bae"]),
    other=st.integers(1, 2),
    mode=st.sampled_from(["paper", "framework"]),
    basis=st.sampled_from(["upper", "expected"]),
    pick=st.integers(0, 3),
    axis=st.sampled_from(["nt", "k"]),
)
def test_max_nt_and_max_k_match_brute_force(family, other, mode, basis, pick, axis):
    fixed = "k" if axis == "nt" else "nt"
    base = FamilySpec.model_validate(
        {"family": family, "k": 1, "nt": 1, "batch": 64, "ht": 32, "hr": 64, fixed: other}
    )
    values = range(1, 7)
    needs = [
        basis_bytes(cached_plan(base.model_copy(update={axis: v}), mode), 64, basis) for v in values
    ]
    ordered = sorted(needs)
    vram = (ordered[pick] + ordered[pick + 1]) // 2
    expected = brute_force(needs, vram)
    if expected == len(needs):
        return
    search = max_nt if axis == "nt" else max_k
    assert search(base, vram, mode, basis) == expected


@pytest.mark.parametrize("mode", ["paper", "framework"])
def test_upper_bytes_never_falls_as_the_batch_grows(mode):
    """The premise of the upper basis's interpolation search, on every family."""
    for family in ("ae", "ae-embedding", "bae", "tanh-bae"):
        plan = cached_plan(FamilySpec(family=family, k=2, nt=2, ht=48, hr=96), mode)
        uppers = [plan.upper_bytes(batch) for batch in range(1, 80)]
        assert uppers == sorted(uppers), family


def test_no_batch_whose_inputs_alone_exceed_the_memory_is_probed(monkeypatch):
    spec = FamilySpec(family="bae", k=2, nt=2, ht=32, hr=64)
    probed: list[int] = []
    plan = cached_plan(spec, "framework")
    original = type(plan).upper_bytes

    def spy(self, batch):
        probed.append(batch)
        return original(self, batch)

    monkeypatch.setattr(type(plan), "upper_bytes", spy)
    vram = 80 * 2**30
    answer = max_batch(spec, vram, "framework")
    per_sample = 4 * (4 + 4)  # 4 input bits and 4 label bits, float32
    assert answer > 0 and max(probed) <= vram // per_sample
    assert len(probed) < 64  # a few interpolation steps, not a scan
