"""Gray-mapped rectangular QAM with unit mean energy.

Even k: square 2^(k/2) x 2^(k/2) QAM (k = 2 is QPSK). Odd k: rectangular
2^((k+1)/2) x 2^((k-1)/2) QAM (k = 1 is BPSK, k = 3 a 4 x 2 grid). Both are exactly Gray:
each axis carries its own bits through a binary-reflected Gray code, so any two nearest
neighbours (one step along I or Q) differ in exactly one bit.

A label is the integer whose k bits (most significant first) the symbol carries: the first
k_I bits choose the in-phase level, the last k_Q bits the quadrature level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray


def _gray_levels(bits: int) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Per-axis tables: level of each Gray word, and the bits (MSB first) of each level."""
    m = 1 << bits
    level = np.arange(m)
    gray = level ^ (level >> 1)
    level_of_word = np.empty(m, dtype=np.int64)
    level_of_word[gray] = level
    shifts = np.arange(bits - 1, -1, -1)
    bits_of_level = ((gray[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    return level_of_word, bits_of_level


@dataclass(frozen=True)
class Constellation:
    """A Gray rectangular QAM: points indexed by label, and a per-axis slicer."""

    k: int
    k_i: int
    k_q: int
    name: str
    scale: float  # amplitude of the +-1 grid step after normalization to Es = 1
    points: NDArray[np.complex128] = field(repr=False)  # (2^k,) indexed by label
    label_bits: NDArray[np.uint8] = field(repr=False)  # (2^k, k)
    _i_level_of_word: NDArray[np.int64] = field(repr=False)
    _q_level_of_word: NDArray[np.int64] = field(repr=False)
    _i_bits: NDArray[np.uint8] = field(repr=False)  # (2^k_i, k_i)
    _q_bits: NDArray[np.uint8] = field(repr=False)  # (2^k_q, k_q)
    _cell_bits: NDArray[np.uint8] = field(repr=False)  # (2^k, k): cell I level * m_q + Q level

    @property
    def size(self) -> int:
        return 1 << self.k

    def modulate(self, bits: NDArray[np.uint8]) -> NDArray[np.complex128]:
        """Bits (..., n*k) of 0/1 -> symbols (..., n)."""
        grouped = bits.reshape(*bits.shape[:-1], -1, self.k)
        return self.points[self.labels(grouped)]

    def labels(self, grouped_bits: NDArray[np.uint8]) -> NDArray[np.intp]:
        """Bits (..., k) -> label integers (...)."""
        if self.k <= 8:  # one packed byte per symbol, the label in its top k bits
            packed = np.packbits(grouped_bits, axis=-1)[..., 0]
            return (packed >> (8 - self.k)).astype(np.intp)
        weights = 1 << np.arange(self.k - 1, -1, -1)
        return np.asarray(grouped_bits @ weights, dtype=np.intp)

    def slice_bits(self, z: NDArray[np.complexfloating]) -> NDArray[np.uint8]:
        """Nearest-point hard decision on estimates z (..., n) -> bits (..., n*k).

        Per axis: the nearest grid level, clipped to the outermost one; on a rectangular
        grid that is the nearest constellation point.
        """
        m_i, m_q = 1 << self.k_i, 1 << self.k_q
        level_i = np.rint((z.real / self.scale + (m_i - 1)) * 0.5)
        np.clip(level_i, 0, m_i - 1, out=level_i)
        cell = level_i.astype(np.intp)
        if self.k_q:
            level_q = np.rint((z.imag / self.scale + (m_q - 1)) * 0.5)
            np.clip(level_q, 0, m_q - 1, out=level_q)
            cell *= m_q
            cell += level_q.astype(np.intp)
        out: NDArray[np.uint8] = self._cell_bits[cell]
        return out.reshape(*z.shape[:-1], z.shape[-1] * self.k)


@lru_cache(maxsize=32)
def qam(k: int) -> Constellation:
    """The Gray QAM carrying k bits per symbol (k >= 1), with mean energy 1."""
    if k < 1:
        raise ValueError(f"k: bits per symbol must be at least 1, got {k}")
    k_i = (k + 1) // 2
    k_q = k // 2
    m_i, m_q = 1 << k_i, 1 << k_q
    energy = (m_i * m_i - 1) / 3 + (m_q * m_q - 1) / 3
    scale = float(1.0 / np.sqrt(energy))
    i_level_of_word, i_bits = _gray_levels(k_i)
    q_level_of_word, q_bits = _gray_levels(k_q)
    labels = np.arange(1 << k)
    i_word = labels >> k_q
    q_word = labels & (m_q - 1)
    amp_i = 2 * i_level_of_word[i_word] - (m_i - 1)
    amp_q = 2 * q_level_of_word[q_word] - (m_q - 1)
    points = scale * (amp_i + 1j * amp_q)
    shifts = np.arange(k - 1, -1, -1)
    label_bits = ((labels[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    if k == 1:
        name = "BPSK"
    elif k == 2:
        name = "QPSK"
    elif k % 2 == 0:
        name = f"{1 << k}-QAM (square {m_i}x{m_q}, Gray)"
    else:
        name = f"{1 << k}-QAM (rectangular {m_i}x{m_q}, Gray)"
    return Constellation(
        k=k,
        k_i=k_i,
        k_q=k_q,
        name=name,
        scale=scale,
        points=points.astype(np.complex128),
        label_bits=label_bits,
        _i_level_of_word=i_level_of_word,
        _q_level_of_word=q_level_of_word,
        _i_bits=i_bits,
        _q_bits=q_bits,
        _cell_bits=np.concatenate(
            [np.repeat(i_bits, m_q, axis=0), np.tile(q_bits, (m_i, 1))], axis=1
        ),
    )
