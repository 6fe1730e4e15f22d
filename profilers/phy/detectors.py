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
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from profilers.phy.qam import Constellation, qam

DetectorName = Literal["zf", "mmse", "ml"]
DETECTORS: tuple[DetectorName, ...] = ("zf", "mmse", "ml")
DEFAULT_MAX_CANDIDATES = 1 << 16  # 8x8 QPSK and 4x4 16-QAM run, 3x3 64-QAM (262,144) does not
DEFAULT_CHUNK_ELEMENTS = 1 << 21  # metric entries held at once (8 MiB in float32)
FIXED_SPLIT_FROM = 4096  # candidates from which a fixed channel's search splits the antennas

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
        return np.asarray(np.einsum("br,tr->bt", y, np.linalg.pinv(one)))
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
        return np.asarray(np.einsum("br,tr->bt", y, w) / gain)
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

    # Both searches split x = [x_a, x_b] over the antennas (the first N_T // 2 and the rest):
    # H x = H_a x_a + H_b x_b, with C_a x C_b = C candidates (i, j), and candidate index
    # i * C_b + j (antenna 0 most significant, as `_candidates` orders them).

    def _halves(self, split: bool = True) -> tuple[int, ComplexArray, ComplexArray]:
        na = self.nt // 2 if split else 0
        points_a = _candidates(self.const.k, na)[0]  # (C_a, na)
        points_b = _candidates(self.const.k, self.nt - na)[0]  # (C_b, nt - na)
        return na, points_a, points_b

    def _fixed(self, y: ComplexArray, h: ComplexArray) -> NDArray[np.intp]:
        # ||y - s_a,i - s_b,j||^2 = ||y||^2 + E_ij - 2 Re(y^H s_a,i) - 2 Re(y^H s_b,j), with
        # E_ij = ||s_a,i + s_b,j||^2 fixed: per message two small products, then two
        # additions per candidate (||y||^2 is the same for all and drops out).
        # Below FIXED_SPLIT_FROM candidates one product against all C (no split) is faster.
        na, points_a, points_b = self._halves(self.count >= FIXED_SPLIT_FROM)
        s_a = points_a @ h[:, :na].T  # (C_a, nr)
        s_b = points_b @ h[:, na:].T  # (C_b, nr)
        norm_a = np.sum(np.abs(s_a) ** 2, axis=1)
        norm_b = np.sum(np.abs(s_b) ** 2, axis=1)
        cross_ab = 2.0 * np.real(s_a @ s_b.conj().T)
        energy_ij = (norm_a[:, None] + norm_b[None, :] + cross_ab).astype(np.float32)
        twice_a = (2.0 * _stack_real(s_a)).T.astype(np.float32)  # (2 nr, C_a)
        twice_b = (2.0 * _stack_real(s_b)).T.astype(np.float32)  # (2 nr, C_b)
        y_real = _stack_real(y).astype(np.float32)  # (rows, 2 nr)

        def prepare(r0: int, r1: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
            return y_real[r0:r1] @ twice_a, y_real[r0:r1] @ twice_b

        def block(
            state: tuple[NDArray[np.float32], NDArray[np.float32]], i0: int, i1: int
        ) -> NDArray[np.float32]:
            corr_a, corr_b = state
            metric = energy_ij[None, i0:i1, :] - corr_a[:, i0:i1, None]
            metric -= corr_b[:, None, :]
            return np.asarray(metric, dtype=np.float32)

        return self._split_search(y.shape[0], len(points_a), len(points_b), prepare, block, 1)

    def _per_sample(self, y: ComplexArray, h: ComplexArray) -> NDArray[np.intp]:
        # The metric of (i, j) is ||r_i||^2 + ||s_j||^2 - 2 Re(r_i^H s_j), r_i = y - H_a x_a,i
        # and s_j = H_b x_b,j: one real product per message over C_a x C_b candidates
        # instead of forming H x for all C of them.
        na, points_a, points_b = self._halves()
        cols_a = points_a.T.astype(np.complex64)  # (na, C_a)
        cols_b = points_b.T.astype(np.complex64)  # (nt - na, C_b)

        State = tuple[
            NDArray[np.complex64], NDArray[np.complex64], NDArray[np.float32], NDArray[np.float32]
        ]

        def prepare(r0: int, r1: int) -> State:
            h_rows = h[r0:r1].astype(np.complex64)
            y_rows = y[r0:r1].astype(np.complex64)
            s_real = _stack_real(h_rows[:, :, na:] @ cols_b, axis=1)  # (r, 2 nr, C_b)
            return h_rows, y_rows, s_real, np.sum(s_real * s_real, axis=1)

        def block(state: State, i0: int, i1: int) -> NDArray[np.float32]:
            h_rows, y_rows, s_real, s_energy = state
            resid = y_rows[:, :, None] - h_rows[:, :, :na] @ cols_a[:, i0:i1]
            r_real = _stack_real(resid, axis=1)  # (r, 2 nr, i1 - i0)
            metric = np.matmul(np.swapaxes(r_real, 1, 2), s_real)  # (r, i1 - i0, C_b)
            metric *= -2.0
            metric += np.sum(r_real * r_real, axis=1)[:, :, None]
            metric += s_energy[:, None, :]
            return np.asarray(metric, dtype=np.float32)

        nr = h.shape[-2]
        return self._split_search(y.shape[0], len(points_a), len(points_b), prepare, block, nr)

    def _split_search(
        self,
        rows: int,
        count_a: int,
        count_b: int,
        prepare: Callable[[int, int], Any],
        block: Callable[[Any, int, int], NDArray[np.float32]],
        per_entry: int,
    ) -> NDArray[np.intp]:
        """Argmin over (i, j) in blocks of about `chunk_elements / per_entry` metric entries."""
        budget = max(1, self.chunk_elements // per_entry)
        i_chunk = max(1, min(count_a, budget // count_b))
        row_chunk = max(1, budget // (i_chunk * count_b))
        best = np.empty(rows, dtype=np.intp)
        for r0 in range(0, rows, row_chunk):
            r1 = min(rows, r0 + row_chunk)
            state = prepare(r0, r1)
            best_value = np.full(r1 - r0, np.inf, dtype=np.float32)
            best_index = np.zeros(r1 - r0, dtype=np.intp)
            for i0 in range(0, count_a, i_chunk):
                i1 = min(count_a, i0 + i_chunk)
                flat = block(state, i0, i1).reshape(r1 - r0, -1)
                local = np.argmin(flat, axis=1)
                local_value = flat[np.arange(r1 - r0), local]
                better = local_value < best_value
                best_value[better] = local_value[better]
                best_index[better] = local[better] + i0 * count_b
            best[r0:r1] = best_index
        return best


def _stack_real(z: NDArray[np.complexfloating], axis: int = -1) -> NDArray[np.floating]:
    """Real and imaginary parts side by side along `axis`: Re(a^H b) becomes a dot product."""
    return np.concatenate([z.real, z.imag], axis=axis)


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
