"""The designer's inverse questions: the largest batch, N_T or k that fits a memory size.

Each answer is exact and safe: the largest x such that *every* value from 1 to x fits
(by the chosen basis, `estimator.gate`), not merely x itself. The two bases differ in
shape:

- "upper" (the default): `Plan.upper_bytes` is non-decreasing along each axis (a sum, over
  the step's tensors, of the largest chunk the allocator can hand each one; every tensor
  grows with the batch, N_T and k), so "x fits" implies "every smaller value fits", and a
  bisection finds the exact answer in O(log x) estimates.
- "expected": the expected peak (`total_bytes`) of the framework mode is not monotone (the
  allocator's layout changes with the sizes: ae k=4 N_T=2 needs less at B=127 than at
  B=117). Everything up to the upper basis's answer fits (peak <= upper), and from there
  every value is checked in turn up to the first that does not fit; when that is more than
  MAX_EXPECTED_SCAN values away, the search says so instead of guessing.

The search never probes where physics already says no: a batch whose input and label
tensors alone exceed the memory is never planned, which bounds the range (and the
bisection) by the memory size instead of 2^62.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from estimator.budget import charge
from estimator.engine import DEFAULT_MODE, Mode, cached_plan, model_for
from estimator.errors import InvalidInput
from estimator.families import MAX_MESSAGE_BITS, ONE_HOT_FAMILIES
from estimator.gate import DEFAULT_BASIS, Basis, required_bytes
from estimator.layers import resolve

if TYPE_CHECKING:
    from estimator.calibration import Calibration
    from estimator.spec import FamilySpec, ModelSpec

INPUT_BYTES = 4  # inputs and labels are float32 or int32 values
MAX_EXPECTED_SCAN = 512  # values checked one by one beyond the upper basis's answer


def io_bytes_per_sample(spec: FamilySpec | ModelSpec) -> int:
    """Bytes of one sample's input and label tensors: a floor under any estimate."""
    model = model_for(spec, "framework")
    layers = resolve(model)
    label = 1 if model.loss == "sparse_categorical_crossentropy" else layers[-1].out_features
    return INPUT_BYTES * (model.input_size + label)


def _last_within(need: Callable[[int], int], limit: int, low: int, high: int) -> int:
    """Largest n in [low, high] with need(n) <= limit, given need(low) <= limit and `need`
    non-decreasing: interpolation search (the needs are close to affine in the batch, so a
    few estimates land on the crossing), falling back to bisection when a step does not
    halve the bracket."""
    at_high = need(high)
    if at_high <= limit:
        return high
    at_low = need(low)
    bisect_next = False
    while high - low > 1:
        span = high - low
        if bisect_next or at_high == at_low:
            guess = (low + high) // 2
        else:
            guess = low + (limit - at_low) * span // (at_high - at_low)
            guess = min(max(guess, low + 1), high - 1)
        value = need(guess)
        if value <= limit:
            low, at_low = guess, value
        else:
            high, at_high = guess, value
        bisect_next = not bisect_next and 2 * (high - low) > span
    return low


def _largest(
    need_upper: Callable[[int], int],
    fits: Callable[[int], bool],
    limit: int,
    bound: int,
    exact_is_upper: bool,
) -> int:
    """Largest n <= bound such that fits(1..n) all hold (0 when fits(1) does not).

    `need_upper` is non-decreasing and need_upper(n) <= limit implies fits(n); when the
    basis is upper, fits(n) is exactly that.
    """
    if bound < 1:
        return 0
    if need_upper(1) > limit:
        if exact_is_upper or not fits(1):
            return 0
        safe = 1
    else:
        safe = _last_within(need_upper, limit, 1, bound)
    if exact_is_upper:
        return safe
    step = 1  # probe ahead: a value that does not fit bounds the scan
    while step <= MAX_EXPECTED_SCAN and safe + step <= bound and fits(safe + step):
        step *= 2
    if step > MAX_EXPECTED_SCAN:
        raise InvalidInput(
            "basis",
            f"'expected': the expected peak still fits {step // 2} values beyond where "
            f"the upper bound stops, more than the {MAX_EXPECTED_SCAN} checked one by one; "
            "use basis 'upper' (the default)",
        )
    while safe < bound and fits(safe + 1):  # the expected peak can dip: check each value
        safe += 1
    return safe


def max_batch(
    spec: FamilySpec | ModelSpec,
    vram_bytes: int,
    mode: Mode = DEFAULT_MODE,
    basis: Basis = DEFAULT_BASIS,
    calibration: Calibration | None = None,
) -> int:
    """The largest B such that every batch 1..B fits in `vram_bytes` (0: not even 1)."""
    plan = cached_plan(spec, mode)
    per_sample_floor = io_bytes_per_sample(spec)
    bound = vram_bytes // per_sample_floor  # beyond it the inputs alone do not fit

    def need_upper(batch: int) -> int:
        charge(1)  # a probe: checks the deadline even where plans are cached
        return required_bytes(plan, batch, "upper", calibration)

    def fits(batch: int) -> bool:
        charge(1)
        return required_bytes(plan, batch, basis, calibration) <= vram_bytes

    return _largest(need_upper, fits, vram_bytes, bound, basis == "upper" or mode == "paper")


def _axis_search(
    spec: FamilySpec,
    axis: str,
    vram_bytes: int,
    mode: Mode,
    basis: Basis,
    calibration: Calibration | None,
    bound: int,
) -> int:
    def candidate(value: int) -> FamilySpec:
        return spec.model_copy(update={axis: value})

    def inputs_fit(value: int) -> bool:
        return io_bytes_per_sample(candidate(value)) * spec.batch <= vram_bytes

    def need_on(value: int, on: Basis) -> int:
        charge(1)
        if not inputs_fit(value):
            return vram_bytes + 1  # the inputs alone exceed it: never planned
        plan = cached_plan(candidate(value), mode)
        return required_bytes(plan, spec.batch, on, calibration)

    return _largest(
        lambda value: need_on(value, "upper"),
        lambda value: need_on(value, basis) <= vram_bytes,
        vram_bytes,
        bound,
        basis == "upper" or mode == "paper",
    )


def _axis_bound(spec: FamilySpec, other_factor: int, vram_bytes: int) -> int:
    """One-hot families stop at 2^MAX_MESSAGE_BITS messages; bit-wise ones where their
    k*N_T input bits per sample alone no longer fit."""
    if spec.family in ONE_HOT_FAMILIES:  # (ae-embedding's input is one index per sample)
        return MAX_MESSAGE_BITS // other_factor
    return vram_bytes // (INPUT_BYTES * spec.batch * other_factor) + 1


def max_nt(
    spec: FamilySpec,
    vram_bytes: int,
    mode: Mode = DEFAULT_MODE,
    basis: Basis = DEFAULT_BASIS,
    calibration: Calibration | None = None,
) -> int:
    """The largest N_T such that every N_T from 1 up fits (N_R follows N_T unless fixed)."""
    bound = _axis_bound(spec, spec.k, vram_bytes)
    return _axis_search(spec, "nt", vram_bytes, mode, basis, calibration, bound)


def max_k(
    spec: FamilySpec,
    vram_bytes: int,
    mode: Mode = DEFAULT_MODE,
    basis: Basis = DEFAULT_BASIS,
    calibration: Calibration | None = None,
) -> int:
    """The largest bits per antenna k such that every k from 1 up fits."""
    bound = _axis_bound(spec, spec.nt, vram_bytes)
    return _axis_search(spec, "k", vram_bytes, mode, basis, calibration, bound)
