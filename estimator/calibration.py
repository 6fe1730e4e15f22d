"""Per-device calibration: what a device adds to (or scales in) an estimate, from measurements.

Every device and framework build keeps some memory the estimate cannot see (CUDA context,
allocator pools). Stored estimated-vs-measured pairs pin it down: an offset when pairs
agree on a constant gap, plus a scale when three or more pairs spanning a range of sizes
ask for one. Until a device has pairs, a prior may stand in: the paper measured an A100
at about 0.7 GB above its estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["none", "prior", "fit"]

A100_PRIOR_OFFSET_BYTES = 700_000_000  # "about 0.7 GB larger" (paper, Fig. 2)
PRIORS: dict[tuple[str, str], int] = {
    ("a100-40gb", "paper"): A100_PRIOR_OFFSET_BYTES,
    ("a100-80gb", "paper"): A100_PRIOR_OFFSET_BYTES,
}
MIN_PAIRS_FOR_SCALE = 3
# A scale is kept only when it explains the pairs clearly better than an offset alone.
SCALE_IMPROVEMENT = 0.5


CALIBRATED_QUANTITY = "training_peak"  # model sizes and latencies say nothing of it


@dataclass(frozen=True)
class Pair:
    estimate_bytes: int
    measured_bytes: int
    quantity: str = CALIBRATED_QUANTITY


@dataclass(frozen=True)
class Calibration:
    device: str
    mode: str
    offset_bytes: int
    scale: float
    pairs: int
    source: Source

    def apply(self, estimate_bytes: int) -> int:
        scaled = estimate_bytes if self.scale == 1.0 else round(estimate_bytes * self.scale)
        return max(0, scaled + self.offset_bytes)


def _residual(pairs: list[Pair], scale: float, offset: float) -> float:
    return sum((p.measured_bytes - (scale * p.estimate_bytes + offset)) ** 2 for p in pairs)


def prior(device: str, mode: str) -> Calibration:
    """The device's calibration before anything was measured on it (the fit verdicts' rule)."""
    return fit(device, mode, [])


def fit(device: str, mode: str, pairs: list[Pair]) -> Calibration:
    """The calibration the training-peak pairs support (the prior, or nothing, when there
    are none); pairs of another quantity are left out."""
    pairs = [p for p in pairs if p.quantity == CALIBRATED_QUANTITY]
    if not pairs:
        prior = PRIORS.get((device, mode))
        source: Source = "none" if prior is None else "prior"
        return Calibration(device, mode, prior or 0, 1.0, 0, source)
    from statistics import median  # not at import: the gate's start-up reads priors only

    offset = median(p.measured_bytes - p.estimate_bytes for p in pairs)
    scale = 1.0
    estimates = [float(p.estimate_bytes) for p in pairs]
    if len(pairs) >= MIN_PAIRS_FOR_SCALE and max(estimates) > min(estimates):
        mean_x = sum(estimates) / len(pairs)
        mean_y = sum(p.measured_bytes for p in pairs) / len(pairs)
        covariance = sum((p.estimate_bytes - mean_x) * (p.measured_bytes - mean_y) for p in pairs)
        variance = sum((x - mean_x) ** 2 for x in estimates)
        fitted_scale = covariance / variance
        fitted_offset = mean_y - fitted_scale * mean_x
        if fitted_scale > 0 and _residual(pairs, fitted_scale, fitted_offset) < (
            SCALE_IMPROVEMENT * _residual(pairs, 1.0, offset)
        ):
            scale, offset = fitted_scale, fitted_offset
    return Calibration(device, mode, round(offset), scale, len(pairs), "fit")
