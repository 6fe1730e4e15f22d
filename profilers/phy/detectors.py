"""Hard-decision MIMO detectors with perfect channel knowledge: ZF, MMSE and exhaustive ML.

Every detector takes y (batch, nr), H as one (nr, nt) matrix or (batch, nr, nt), and the
noise variance N0 per receive antenna, and returns the decided bits (batch, nt * k).
ZF and MMSE equalize, then slice each stream to its nearest constellation point (MMSE is the
unbiased one: each stream is divided by its gain, which matters for QAM beyond QPSK). ML
searches all (2^k)^N_T transmit vectors for the smallest ||y - Hx||^2, a bounded chunk of
the (message, candidate) metric matrix at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from profilers.phy.qam import Constellation, qam

DetectorName = Literal["zf", "mmse", "ml"]
DETECTORS: tuple[DetectorName, ...] = ("zf", "mmse", "ml")
DEFAULT_MAX_CANDIDATES = 1 << 16  # 8x8 QPSK and 4x4 16-QAM run, 3x3 64-QAM (262,144) does not
DEFAULT_CHUNK_ELEMENTS = 1 << 21  # metric entries held at once (8 MiB in float32)

ComplexArray = NDArray[np.complex128]
Bits = NDArray[np.uint8]
Detector = Callable[[ComplexArray, ComplexArray, float], Bits]


class CandidateLimitError(ValueError):
    """Exhaustive ML would search more transmit vectors than allowed."""


def candidate_count(k: int, nt: int) -> int:
    return int((1 << k) ** nt)


def check_candidates(k: int, nt: int, max_candidates: int) -> int:
    """The ML candidate count, or a CandidateLimitError naming the limit."""
    count = candidate_count(k, nt)
    if count > max_candidates:
        raise CandidateLimitError(
            f"max_candidates: ML detection with k = {k}, N_T = {nt} searches "
            f"(2^{k})^{nt} = {count:,} candidates, above the limit of {max_candidates:,}; "
            "use zf or mmse, or raise the limit"
        )
    return count


def _single(h: ComplexArray) -> ComplexArray | None:
    """The one matrix of a fixed channel (2-D, or a broadcast batch), else None."""
    if h.ndim == 2:
        return h
    if h.strides[0] == 0:
        return np.asarray(h[0])
    return None


def zf_estimate(y: ComplexArray, h: ComplexArray) -> ComplexArray:
    """x_hat = (H^H H)^-1 H^H y."""
    if h.shape[-2] < h.shape[-1]:
        raise ValueError(f"detector: zf needs nr >= nt, got nr = {h.shape[-2]}, nt = {h.shape[-1]}")
    one = _single(h)
    if one is not None:
        return y @ np.linalg.pinv(one).T
    hh = np.conj(np.swapaxes(h, -1, -2))
    gram = hh @ h
    matched = np.einsum("btr,br->bt", hh, y)
    return np.asarray(np.linalg.solve(gram, matched[..., None])[..., 0], dtype=np.complex128)


def mmse_estimate(y: ComplexArray, h: ComplexArray, n0: float, es: float = 1.0) -> ComplexArray:
    """Unbiased MMSE: W = (H^H H + N0/Es I)^-1 H^H, each stream divided by its gain (W H)_ii."""
    nt = h.shape[-1]
    ridge = (n0 / es) * np.eye(nt)
    one = _single(h)
    if one is not None:
        hh = one.conj().T
        inverse = np.linalg.inv(hh @ one + ridge)
        w = inverse @ hh
        gain = np.real(np.diag(w @ one))
        return (y @ w.T) / gain
    hh = np.conj(np.swapaxes(h, -1, -2))
    gram = hh @ h
    inverse = np.linalg.inv(gram + ridge)
    z = np.einsum("bij,bj->bi", inverse, np.einsum("btr,br->bt", hh, y))
    gain = np.real(np.einsum("bij,bji->bi", inverse, gram))
    return np.asarray(z / gain)


@lru_cache(maxsize=16)
def _candidates(k: int, nt: int) -> tuple[ComplexArray, Bits]:
    """All transmit vectors (C, nt) and their bits (C, nt * k); antenna 0 most significant."""
    const = qam(k)
    m = const.size
    index = np.arange(m**nt)
    powers = m ** np.arange(nt - 1, -1, -1)
    labels = (index[:, None] // powers[None, :]) % m
    points = const.points[labels]
    bits = const.label_bits[labels].reshape(m**nt, nt * k)
    points.setflags(write=False)
    bits.setflags(write=False)
    return points, bits


class MLDetector:
    """Exhaustive maximum-likelihood detection, chunked to bound memory."""

    def __init__(
        self,
        const: Constellation,
        nt: int,
        *,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> None:
        self.count = check_candidates(const.k, nt, max_candidates)
        self.const = const
        self.nt = nt
        self.chunk_elements = max(1, chunk_elements)
        self.points, self.bits = _candidates(const.k, nt)

    def __call__(self, y: ComplexArray, h: ComplexArray, n0: float = 0.0) -> Bits:
        return self.bits[self.indices(y, h)]

    def indices(self, y: ComplexArray, h: ComplexArray) -> NDArray[np.intp]:
        """Index of the nearest candidate H x to each y."""
        one = _single(h)
        if one is not None:
            return self._fixed(y, one)
        return self._per_sample(y, h)

    def _fixed(self, y: ComplexArray, h: ComplexArray) -> NDArray[np.intp]:
        # ||y - s||^2 = ||y||^2 - 2 Re(y^H s) + ||s||^2; ||y||^2 is the same for every s.
        s = self.points @ h.T  # (C, nr)
        s_real = np.concatenate([s.real, s.imag], axis=1).astype(np.float32)
        energy = np.sum(s_real * s_real, axis=1)
        y_real = np.concatenate([y.real, y.imag], axis=1).astype(np.float32)
        s_twice = (2.0 * s_real).T.copy()  # (2 nr, C)
        return self._search(
            y.shape[0],
            lambda r0, r1, c0, c1: energy[c0:c1] - y_real[r0:r1] @ s_twice[:, c0:c1],
            1,
        )

    def _per_sample(self, y: ComplexArray, h: ComplexArray) -> NDArray[np.intp]:
        points_t = self.points.T.astype(np.complex64)  # (nt, C)
        h32 = h.astype(np.complex64)
        y32 = y.astype(np.complex64)

        def metric(r0: int, r1: int, c0: int, c1: int) -> NDArray[np.float32]:
            diff = y32[r0:r1, :, None] - h32[r0:r1] @ points_t[:, c0:c1]
            return np.asarray(np.sum(diff.real**2 + diff.imag**2, axis=1))

        return self._search(y.shape[0], metric, h.shape[-2])

    def _search(
        self,
        rows: int,
        metric: Callable[[int, int, int, int], NDArray[np.float32]],
        per_entry: int,
    ) -> NDArray[np.intp]:
        budget = max(1, self.chunk_elements // per_entry)
        cand_chunk = min(self.count, budget)
        row_chunk = max(1, budget // cand_chunk)
        best = np.empty(rows, dtype=np.intp)
        for r0 in range(0, rows, row_chunk):
            r1 = min(rows, r0 + row_chunk)
            best_value = np.full(r1 - r0, np.inf, dtype=np.float32)
            best_index = np.zeros(r1 - r0, dtype=np.intp)
            for c0 in range(0, self.count, cand_chunk):
                c1 = min(self.count, c0 + cand_chunk)
                values = metric(r0, r1, c0, c1)
                local = np.argmin(values, axis=1)
                local_value = values[np.arange(r1 - r0), local]
                better = local_value < best_value
                best_value[better] = local_value[better]
                best_index[better] = local[better] + c0
            best[r0:r1] = best_index
        return best


def make_detector(
    name: str,
    k: int,
    nt: int,
    *,
    es: float = 1.0,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Detector:
    """A detector callable(y, h, n0) -> bits for Gray QAM with k bits per antenna."""
    const = qam(k)
    if name == "zf":
        return lambda y, h, n0: const.slice_bits(zf_estimate(y, h))
    if name == "mmse":
        return lambda y, h, n0: const.slice_bits(mmse_estimate(y, h, n0, es))
    if name == "ml":
        return MLDetector(const, nt, max_candidates=max_candidates, chunk_elements=chunk_elements)
    raise ValueError(f"detector: must be one of {', '.join(DETECTORS)}, got {name!r}")
