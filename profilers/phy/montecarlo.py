"""Monte Carlo bit, symbol and message error rates over an Eb/N0 grid.

A link is any callable ``link(batch, ebn0_db, rng) -> LinkOutcome`` that sends `batch`
messages (one channel use each) and returns the bits sent and decided. Each point runs
until `target_errors` bit errors or `max_bits` bits; the sweep stops after the first point
with no bit error in its budget. Intervals are 95% Clopper-Pearson (scipy's exact method).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_TARGET_ERRORS = 1000
DEFAULT_MAX_BITS = 10**7
DEFAULT_BATCH = 1 << 16  # the largest number of messages per link call
FIRST_BATCH = 1024  # messages in a point's first call; later calls grow from the error rate
DEFAULT_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class LinkOutcome:
    """One batch through a link.

    bits, bits_hat: (batch, nt * k) arrays of 0/1, one row per message (one channel use).
    tx_energy: mean |x|^2 per transmit antenna over this batch.
    symbol_bits: bits per symbol (k; a symbol is one antenna's bits); None counts each
    message as one symbol.
    """

    bits: NDArray[np.uint8]
    bits_hat: NDArray[np.uint8]
    tx_energy: float
    symbol_bits: int | None = None


@dataclass(frozen=True)
class BerPoint:
    """The measured error rates at one Eb/N0 point (asdict-able; `row()` for JSON)."""

    detector: str
    ebn0_db: float
    bits: int
    bit_errors: int
    ber: float
    ci_low: float
    ci_high: float
    symbols: int
    symbol_errors: int
    messages: int
    message_errors: int
    tx_energy: float
    ser: float = 0.0
    bler: float = 0.0

    def row(self) -> dict[str, Any]:
        """The JSON row: every field, plus `errors` (the bit errors) as the CLI prints it."""
        out = asdict(self)
        out["errors"] = self.bit_errors
        return out


def clopper_pearson(
    errors: int, trials: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Exact binomial interval for errors / trials."""
    from scipy.stats import binomtest

    interval = binomtest(errors, trials).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


def parse_grid(text: str) -> list[float]:
    """'start:stop:step' (stop included), 'a,b,c' or one value -> Eb/N0 values in dB."""
    raw = text.strip()
    try:
        if ":" in raw:
            parts = [float(p) for p in raw.split(":")]
            if len(parts) == 2:
                parts.append(1.0)
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 9) for i in range(count)]
        else:
            values = [float(p) for p in raw.split(",")]
    except ValueError:
        raise ValueError(
            f"ebn0: expected 'start:stop:step' with step > 0 and stop >= start, "
            f"or comma-separated values, got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"ebn0: values must be finite numbers, got {text!r}")
    return values


_WORDS = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}


def _groups_with_error(wrong: NDArray[np.uint8], group: int) -> int:
    """How many runs of `group` consecutive entries of a C-contiguous 0/1 array hold a 1.

    Reading the bytes as wider words turns most cases into one count_nonzero.
    """
    flat = wrong.reshape(-1)
    for size, word in _WORDS.items():
        if group % size == 0:
            words = flat.view(word)
            if group == size:
                return int(np.count_nonzero(words))
            return int(np.count_nonzero(words.reshape(-1, group // size).any(axis=1)))
    raise AssertionError("unreachable: every group is a multiple of 1")


@dataclass
class _Tally:
    bits: int = 0
    bit_errors: int = 0
    symbols: int = 0
    symbol_errors: int = 0
    messages: int = 0
    message_errors: int = 0
    energy_sum: float = 0.0  # sum over messages of the batch mean energy per antenna

    def add(self, outcome: LinkOutcome) -> None:
        wrong = np.ascontiguousarray(np.not_equal(outcome.bits, outcome.bits_hat), dtype=np.uint8)
        messages, width = wrong.shape
        per = outcome.symbol_bits or width
        if width % per:
            raise ValueError(f"symbol_bits: {per} does not divide the {width} bits per message")
        self.bits += wrong.size
        self.bit_errors += int(np.count_nonzero(wrong))
        self.symbols += messages * (width // per)
        self.symbol_errors += _groups_with_error(wrong, per)
        self.messages += messages
        self.message_errors += _groups_with_error(wrong, width)
        self.energy_sum += float(outcome.tx_energy) * messages

    def point(self, detector: str, ebn0_db: float) -> BerPoint:
        low, high = clopper_pearson(self.bit_errors, self.bits)
        return BerPoint(
            detector=detector,
            ebn0_db=float(ebn0_db),
            bits=self.bits,
            bit_errors=self.bit_errors,
            ber=self.bit_errors / self.bits,
            ci_low=low,
            ci_high=high,
            symbols=self.symbols,
            symbol_errors=self.symbol_errors,
            messages=self.messages,
            message_errors=self.message_errors,
            tx_energy=self.energy_sum / self.messages,
            ser=self.symbol_errors / self.symbols,
            bler=self.message_errors / self.messages,
        )


Link = Callable[[int, float, np.random.Generator], LinkOutcome]


def _next_batch(tally: _Tally, bits_per_message: int, target: int, max_bits: int, cap: int) -> int:
    """Messages for the next call: enough for the expected remaining errors, within bounds."""
    left = -(-(max_bits - tally.bits) // bits_per_message)
    if tally.bit_errors:
        rate = tally.bit_errors / tally.bits
        needed = math.ceil(1.2 * (target - tally.bit_errors) / (rate * bits_per_message)) + 1
    else:
        needed = cap
    grown = max(FIRST_BATCH, 4 * tally.messages)
    return max(1, min(left, needed, grown, cap))


def simulate_point(
    link: Link,
    ebn0_db: float,
    *,
    detector: str,
    target_errors: int = DEFAULT_TARGET_ERRORS,
    max_bits: int = DEFAULT_MAX_BITS,
    batch: int = DEFAULT_BATCH,
    rng: np.random.Generator,
) -> BerPoint:
    """One point: batches until `target_errors` bit errors or `max_bits` bits."""
    tally = _Tally()
    outcome = link(min(FIRST_BATCH, batch, max_bits), ebn0_db, rng)
    bits_per_message = outcome.bits.shape[1]
    keep = -(-max_bits // bits_per_message)  # a tiny budget: drop what the first call overshot
    if outcome.bits.shape[0] > keep:
        outcome = LinkOutcome(
            outcome.bits[:keep], outcome.bits_hat[:keep], outcome.tx_energy, outcome.symbol_bits
        )
    tally.add(outcome)
    while tally.bit_errors < target_errors and tally.bits < max_bits:
        n = _next_batch(tally, bits_per_message, target_errors, max_bits, batch)
        tally.add(link(n, ebn0_db, rng))
    return tally.point(detector, ebn0_db)


def simulate(
    link: Link,
    ebn0_grid: Iterable[float],
    *,
    detector: str,
    target_errors: int = DEFAULT_TARGET_ERRORS,
    max_bits: int = DEFAULT_MAX_BITS,
    batch: int = DEFAULT_BATCH,
    seed: int = DEFAULT_SEED,
    on_point: Callable[[BerPoint], None] | None = None,
) -> list[BerPoint]:
    """Points in grid order, stopping after the first with zero bit errors.

    Each point draws from its own stream (the seed and the point's index), so a point's
    result does not depend on how many batches the points before it took.
    """
    if target_errors < 1:
        raise ValueError(f"target_errors: must be at least 1, got {target_errors}")
    if max_bits < 1:
        raise ValueError(f"max_bits: must be at least 1, got {max_bits}")
    if batch < 1:
        raise ValueError(f"batch: must be at least 1, got {batch}")
    grid = list(ebn0_grid)
    streams = np.random.SeedSequence(seed).spawn(len(grid))
    points: list[BerPoint] = []
    for ebn0_db, stream in zip(grid, streams, strict=True):
        point = simulate_point(
            link,
            ebn0_db,
            detector=detector,
            target_errors=target_errors,
            max_bits=max_bits,
            batch=batch,
            rng=np.random.default_rng(stream),
        )
        points.append(point)
        if on_point is not None:
            on_point(point)
        if point.bit_errors == 0:
            break
    return points
