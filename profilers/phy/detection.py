"""DetNet's detection problem: real i.i.d. Gaussian MIMO channels with BPSK, as the DetNet
papers train and test it, and the pieces around the network (its input, the loss of the
green-DetNet paper's Eq. (4) in numpy, links for the Monte Carlo BER of profilers.phy).

The model (docs/csinet_detnet_training.md): y = H x + n with H in R^{N x K}, entries
N(0, 1) drawn per sample; x in {-1, +1}^K (bit b sent as 1 - 2b); n ~ N(0, sigma^2 I).
The SNR is the received signal power per receive antenna over the noise variance,
E|(H x)_i|^2 / sigma^2 = K / sigma^2, so sigma^2 = K / 10^(SNR/10). The network sees
H and y only through H^T y and H^T H (Eq. (2)); its first input is
[H^T y / N | H^T H / N (row-major) | x_1 = 0 | v_1 = 0]: the channel as the network sees it
is normalised to unit expected column energy (H / sqrt(N)), so H^T H sits near the identity
rather than near N I. Zero forcing, MMSE, the SNR and the Eq. (4) labels do not change (the
ZF solution is the same for both scalings); what changes is the scale the network's
weights start from. Measured (benchmarks/csinet_detnet_training.md): without the 1/N, a
10-layer DetNet after 600 Adam steps detects at BER 0.158 at 12 dB, worse than the matched
filter; with it, 0.006, below ZF.

The BER links take the SNR in dB where profilers.phy's links take Eb/N0 (for this real
BPSK model the two differ by a constant; the papers plot against SNR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from profilers.phy.baselines import random_bits
from profilers.phy.montecarlo import LinkOutcome

FloatArray = NDArray[np.float64]
# (H (B, N, K), y (B, N), sigma^2 (B,)) -> soft estimates of x (B, K)
Detector = Callable[[FloatArray, FloatArray, FloatArray], NDArray[np.floating]]


@dataclass(frozen=True)
class DetectionBatch:
    bits: NDArray[np.uint8]  # (B, K)
    x: FloatArray  # (B, K), +-1
    h: FloatArray  # (B, N, K)
    y: FloatArray  # (B, N)
    sigma2: FloatArray  # (B,)


def noise_variance(snr_db: float | FloatArray, transmitters: int) -> FloatArray:
    """sigma^2 = K / 10^(SNR/10) (SNR per receive antenna, unit-variance H, BPSK)."""
    return np.asarray(transmitters / 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0))


def draw(
    batch: int,
    transmitters: int,
    receivers: int,
    snr_db: float | FloatArray,
    rng: np.random.Generator,
) -> DetectionBatch:
    """`batch` independent (H, x, y) at the given SNR (one value or one per sample)."""
    bits = random_bits((batch, transmitters), rng)
    x = 1.0 - 2.0 * bits.astype(np.float64)
    h = rng.standard_normal((batch, receivers, transmitters))
    sigma2 = np.broadcast_to(noise_variance(snr_db, transmitters), (batch,)).copy()
    noise = rng.standard_normal((batch, receivers)) * np.sqrt(sigma2)[:, None]
    y = np.einsum("bnk,bk->bn", h, x) + noise
    return DetectionBatch(bits, x, h, y, sigma2)


def network_input(h: FloatArray, y: FloatArray, v: int) -> NDArray[np.float32]:
    """DetNet's first state [H^T y / N | H^T H / N | 0 (x_1) | 0 (v_1)], (B, 2K + K^2 + v):
    the Gram terms of the channel normalised to unit column energy (see the module)."""
    batch, receivers, k = h.shape
    hty = np.einsum("bnk,bn->bk", h, y) / receivers
    hth = np.einsum("bnk,bnj->bkj", h, h).reshape(batch, -1) / receivers
    zeros = np.zeros((batch, k + v))
    return np.concatenate([hty, hth, zeros], axis=1).astype(np.float32)


def zero_forcing(h: FloatArray, y: FloatArray, sigma2: FloatArray | None = None) -> FloatArray:
    """x_ZF = (H^T H)^-1 H^T y, the 'standard decoder' Eq. (4) normalises by."""
    gram = np.einsum("bnk,bnj->bkj", h, h)
    return np.asarray(np.linalg.solve(gram, np.einsum("bnk,bn->bk", h, y)[..., None])[..., 0])


def mmse(h: FloatArray, y: FloatArray, sigma2: FloatArray) -> FloatArray:
    """x_MMSE = (H^T H + sigma^2 I)^-1 H^T y (E x^2 = 1); its sign is the decision."""
    k = h.shape[2]
    gram = np.einsum("bnk,bnj->bkj", h, h) + sigma2[:, None, None] * np.eye(k)
    return np.asarray(np.linalg.solve(gram, np.einsum("bnk,bn->bk", h, y)[..., None])[..., 0])


BASELINES: dict[str, Detector] = {"zf": zero_forcing, "mmse": mmse}


def eq4_loss(x: FloatArray, layer_estimates: FloatArray, x_zf: FloatArray) -> float:
    """Eq. (4) averaged over the batch: sum_l log(l) ||x - x_hat_l||^2 / ||x - x_ZF||^2,
    x_hat_l the output of unfolded layer l = 1..L (layer_estimates (B, L, K))."""
    layers = layer_estimates.shape[1]
    weights = np.log(np.arange(1, layers + 1, dtype=np.float64))
    errors = np.sum((x[:, None, :] - layer_estimates) ** 2, axis=2)  # (B, L)
    reference = np.sum((x - x_zf) ** 2, axis=1)  # (B,)
    return float(np.mean(errors @ weights / reference))


def link(detect: Detector, transmitters: int, receivers: int) -> Callable[..., LinkOutcome]:
    """A profilers.phy Monte Carlo link: fresh (H, x, n) at the point's SNR, decided by
    the sign of `detect`'s estimate."""

    def run(batch: int, snr_db: float, rng: np.random.Generator) -> LinkOutcome:
        sample = draw(batch, transmitters, receivers, snr_db, rng)
        estimate = np.asarray(detect(sample.h, sample.y, sample.sigma2))
        decided = (estimate < 0).astype(np.uint8)
        return LinkOutcome(sample.bits, decided, 1.0, symbol_bits=1)

    return run
