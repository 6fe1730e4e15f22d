"""Uncoded Gray QAM links with classical detection, as Monte Carlo links for `simulate`."""

from __future__ import annotations

import numpy as np

from profilers.phy.channels import ChannelSpec, draw_channel, noise_n0, transmit
from profilers.phy.detectors import (
    DEFAULT_CHUNK_ELEMENTS,
    DEFAULT_MAX_CANDIDATES,
    make_detector,
)
from profilers.phy.montecarlo import (
    DEFAULT_BATCH,
    DEFAULT_MAX_BITS,
    DEFAULT_SEED,
    DEFAULT_TARGET_ERRORS,
    BerPoint,
    Link,
    LinkOutcome,
    simulate,
)
from profilers.phy.qam import qam


def random_bits(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Uniform 0/1 bits (uint8), drawn as packed random bytes."""
    count = shape[0] * shape[1]
    packed = rng.integers(0, 256, size=-(-count // 8), dtype=np.uint8)
    return np.unpackbits(packed, count=count).reshape(shape)


def baseline_link(
    detector: str,
    k: int,
    channel: ChannelSpec,
    *,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Link:
    """Random bits -> Gray QAM per antenna -> channel -> detector, Es = 1 per antenna."""
    const = qam(k)
    detect = make_detector(
        detector,
        k,
        channel.nt,
        max_candidates=max_candidates,
        chunk_elements=chunk_elements,
    )
    if detector == "zf" and channel.nr < channel.nt:
        raise ValueError(f"nr: zf needs nr >= nt, got nr = {channel.nr}, nt = {channel.nt}")
    width = channel.nt * k

    def link(batch: int, ebn0_db: float, rng: np.random.Generator) -> LinkOutcome:
        bits = random_bits((batch, width), rng)
        x = const.modulate(bits)
        h = draw_channel(channel, batch, rng)
        n0 = noise_n0(ebn0_db, k)
        y = transmit(x, h, n0, rng)
        energy = float(np.mean(x.real**2 + x.imag**2))
        return LinkOutcome(bits, detect(y, h, n0), energy, symbol_bits=k)

    return link


def run_baseline(
    detector: str,
    k: int,
    channel: ChannelSpec,
    ebn0_grid: list[float],
    *,
    target_errors: int = DEFAULT_TARGET_ERRORS,
    max_bits: int = DEFAULT_MAX_BITS,
    batch: int = DEFAULT_BATCH,
    seed: int = DEFAULT_SEED,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> list[BerPoint]:
    """The BER curve of one classical baseline."""
    link = baseline_link(detector, k, channel, max_candidates=max_candidates)
    return simulate(
        link,
        ebn0_grid,
        detector=detector,
        target_errors=target_errors,
        max_bits=max_bits,
        batch=batch,
        seed=seed,
    )
