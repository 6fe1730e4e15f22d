"""Synthetic massive-MIMO CSI in the angular-delay domain, for training CsiNet, and the
two figures of merit CsiNet is judged by (NMSE and the cosine similarity rho).

COST 2100 channels (what the CsiNet papers train on) cannot be generated here, so the
training data come from a stated clustered multipath model (docs/csinet_detnet_training.md):

- a base station with a uniform linear array of N_t = 32 antennas at half-wavelength
  spacing, OFDM over N_c = 256 subcarriers, one receive antenna;
- per sample 1 to 3 clusters (uniformly), each with `PATHS_PER_CLUSTER` paths; a cluster
  has a mean delay uniform in [0, `MAX_CLUSTER_DELAY`) taps and a mean angle uniform in
  (-90, 90) degrees; its paths spread around it by an exponential delay (mean
  `DELAY_SPREAD` taps) and a Gaussian angle (`ANGLE_SPREAD_DEG`); the cluster's power
  falls as exp(-delay / `POWER_DECAY`) times a log-normal factor (`SHADOW_DB`), each path
  a complex Gaussian gain sharing it;
- the spatial-frequency matrix H_sf[n, a] = sum_p g_p exp(-j 2 pi n tau_p / N_c)
  exp(-j pi a sin(theta_p)) goes to the angular-delay domain by a DFT over the
  subcarriers and one over the antennas (both unitary), and only the first 32 delay taps
  are kept: a 32 x 32 complex matrix, sparse because the paths are few and early;
- CsiNet's input: real and imaginary parts scaled per sample into [0, 1] around 0.5,
  x = 0.5 + H / (2 max(|Re H|, |Im H|)), laid out (delay, angle, [Re, Im]) and flattened
  to 2048 values, the order CsiNet's Reshape(32, 32, 2) reads.

numpy only; every draw comes from the caller's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

ANTENNAS = 32  # N_t
TAPS = 32  # delay taps kept
SUBCARRIERS = 256  # N_c
VALUES = 2 * ANTENNAS * TAPS  # 2048 reals per sample
MAX_CLUSTERS = 3
PATHS_PER_CLUSTER = 4
MAX_CLUSTER_DELAY = 16.0  # taps
DELAY_SPREAD = 1.0  # taps, mean of the exponential spread within a cluster
ANGLE_SPREAD_DEG = 3.0
POWER_DECAY = 8.0  # taps
SHADOW_DB = 3.0
OFFSET = 0.5

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]


@dataclass(frozen=True)
class CsiBatch:
    """A batch of channels: the network's input (B, 2048) in [0, 1] and the complex
    angular-delay matrices (B, 32 taps, 32 angles) it encodes, at the input's scale."""

    inputs: NDArray[np.float32]
    channels: ComplexArray


def _paths(batch: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray, ComplexArray]:
    """Delays (taps), angles (rad) and complex gains, (B, MAX_CLUSTERS * P) each; the paths
    of clusters a sample does not have get gain 0."""
    clusters = rng.integers(1, MAX_CLUSTERS + 1, size=batch)
    shape = (batch, MAX_CLUSTERS)
    cluster_delay = rng.uniform(0.0, MAX_CLUSTER_DELAY, size=shape)
    cluster_angle = rng.uniform(-np.pi / 2, np.pi / 2, size=shape)
    shadow = 10.0 ** (SHADOW_DB * rng.standard_normal(shape) / 10.0)
    power = np.exp(-cluster_delay / POWER_DECAY) * shadow
    power *= np.arange(MAX_CLUSTERS)[None, :] < clusters[:, None]
    paths = (batch, MAX_CLUSTERS, PATHS_PER_CLUSTER)
    delay = cluster_delay[..., None] + rng.exponential(DELAY_SPREAD, size=paths)
    angle = cluster_angle[..., None] + np.deg2rad(ANGLE_SPREAD_DEG) * rng.standard_normal(paths)
    gain = (rng.standard_normal(paths) + 1j * rng.standard_normal(paths)) * np.sqrt(
        power[..., None] / (2.0 * PATHS_PER_CLUSTER)
    )
    flat = (batch, MAX_CLUSTERS * PATHS_PER_CLUSTER)
    return delay.reshape(flat), angle.reshape(flat), gain.reshape(flat)


def spatial_frequency(batch: int, rng: np.random.Generator) -> ComplexArray:
    """H_sf (B, N_c subcarriers, N_t antennas) of the clustered model."""
    delay, angle, gain = _paths(batch, rng)
    n = np.arange(SUBCARRIERS)
    a = np.arange(ANTENNAS)
    over_frequency = np.exp(-2j * np.pi * delay[..., None] * n / SUBCARRIERS)
    steering = np.exp(-1j * np.pi * np.sin(angle)[..., None] * a)
    weighted = np.swapaxes(gain[..., None] * over_frequency, 1, 2)  # (B, N_c, paths)
    return np.asarray(weighted @ steering)


def angular_delay(h_sf: ComplexArray, taps: int = TAPS) -> ComplexArray:
    """Unitary DFTs over subcarriers (to delay) and antennas (to angle); the first `taps`
    delay rows. The subcarrier transform is the inverse DFT, so a path of delay tau lands
    on row tau."""
    delay = np.fft.ifft(h_sf, axis=1, norm="ortho")
    both = np.fft.fft(delay, axis=2, norm="ortho")
    return np.asarray(both[:, :taps, :])


def to_inputs(channels: ComplexArray) -> tuple[NDArray[np.float32], ComplexArray]:
    """CsiNet's [0, 1] input of each matrix, and the matrix at that scale (x - 0.5)."""
    peak = np.maximum(np.abs(channels.real), np.abs(channels.imag)).max(axis=(1, 2))
    scaled = channels / (2.0 * np.maximum(peak, 1e-30))[:, None, None]
    stacked = np.stack([scaled.real, scaled.imag], axis=-1) + OFFSET
    return stacked.reshape(channels.shape[0], -1).astype(np.float32), scaled


def draw(batch: int, rng: np.random.Generator) -> CsiBatch:
    """`batch` channels of the clustered model as CsiNet's inputs."""
    inputs, scaled = to_inputs(angular_delay(spatial_frequency(batch, rng)))
    return CsiBatch(inputs, scaled)


def from_inputs(values: NDArray[np.floating]) -> ComplexArray:
    """The complex (B, 32, 32) matrices of CsiNet inputs or outputs (the 0.5 removed)."""
    grid = np.asarray(values, dtype=np.float64).reshape(-1, TAPS, ANTENNAS, 2) - OFFSET
    return np.asarray(grid[..., 0] + 1j * grid[..., 1])


def nmse_db(truth: ComplexArray, estimate: ComplexArray) -> float:
    """10 log10 E{||H_hat - H||^2 / ||H||^2} over the batch (angular-delay domain)."""
    error = np.sum(np.abs(estimate - truth) ** 2, axis=(1, 2))
    power = np.sum(np.abs(truth) ** 2, axis=(1, 2))
    return float(10.0 * np.log10(np.mean(error / np.maximum(power, 1e-30))))


def rho(truth: ComplexArray, estimate: ComplexArray, subcarriers: int = SUBCARRIERS) -> float:
    """E{ 1/N_c sum_n |h_n^H h_hat_n| / (||h_n|| ||h_hat_n||) }: the cosine similarity of
    each subcarrier's channel vector, back in the frequency domain (the kept taps
    zero-padded to N_c and transformed back). The angle DFT is unitary, so the vectors
    are compared in the angular domain, which gives the same cosines."""

    def per_subcarrier(h: ComplexArray) -> ComplexArray:
        return np.asarray(np.fft.fft(h, n=subcarriers, axis=1, norm="ortho"))

    h, h_hat = per_subcarrier(truth), per_subcarrier(estimate)
    inner = np.abs(np.sum(np.conj(h) * h_hat, axis=2))
    norms = np.linalg.norm(h, axis=2) * np.linalg.norm(h_hat, axis=2)
    return float(np.mean(inner / np.maximum(norms, 1e-30)))
