"""The designer's inverse questions: the largest batch, N_T or k that fits a memory size."""

from __future__ import annotations

from collections.abc import Callable

from estimator.engine import DEFAULT_MODE, Mode, cached_plan
from estimator.errors import InvalidSpec
from estimator.families import MAX_MESSAGE_BITS, ONE_HOT_FAMILIES
from estimator.spec import FamilySpec, ModelSpec


def _largest(fits: Callable[[int], bool], upper_bound: int | None = None) -> int:
    """Largest n >= 1 with fits(n), for a monotone `fits`; 0 when even 1 does not fit."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while (upper_bound is None or high <= upper_bound) and fits(high):
        low, high = high, high * 2
    if upper_bound is not None:
        high = min(high, upper_bound + 1)
    while high - low > 1:  # invariant: fits(low), not fits(high) (or high past the bound)
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _message_bits_bound(spec: FamilySpec, other_factor: int) -> int | None:
    """One-hot families stop at 2^MAX_MESSAGE_BITS messages; bit-wise ones grow linearly."""
    return MAX_MESSAGE_BITS // other_factor if spec.family in ONE_HOT_FAMILIES else None


def max_batch(spec: FamilySpec | ModelSpec, vram_bytes: int, mode: Mode = DEFAULT_MODE) -> int:
    """The largest batch whose estimate fits in `vram_bytes` (0: not even batch 1)."""
    plan = cached_plan(spec, mode)
    coefficients = plan.affine()
    if coefficients is not None:
        fixed, per_sample = coefficients
        if fixed + per_sample > vram_bytes:
            return 0
        if per_sample == 0:
            raise InvalidSpec("spec", "memory does not depend on the batch size: any batch fits")
        return (vram_bytes - fixed) // per_sample
    return _largest(lambda batch: plan.total_bytes(batch) <= vram_bytes, upper_bound=2**62)


def max_nt(spec: FamilySpec, vram_bytes: int, mode: Mode = DEFAULT_MODE) -> int:
    """The largest N_T (with N_R following N_T unless the spec fixes it) that fits."""

    def fits(nt: int) -> bool:
        candidate = spec.model_copy(update={"nt": nt})
        return cached_plan(candidate, mode).total_bytes(spec.batch) <= vram_bytes

    return _largest(fits, upper_bound=_message_bits_bound(spec, spec.k))


def max_k(spec: FamilySpec, vram_bytes: int, mode: Mode = DEFAULT_MODE) -> int:
    """The largest bits-per-antenna k that fits."""

    def fits(k: int) -> bool:
        candidate = spec.model_copy(update={"k": k})
        return cached_plan(candidate, mode).total_bytes(spec.batch) <= vram_bytes

    return _largest(fits, upper_bound=_message_bits_bound(spec, spec.nt))
