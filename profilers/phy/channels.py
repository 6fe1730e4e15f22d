"""MIMO channels y = H x + n at a given Eb/N0.

SNR is Eb/N0 with Eb = Es / k (k bits per transmit antenna, Es the mean energy per transmit
antenna, 1 for the unit-energy constellations) and complex Gaussian noise of variance N0 per
receive antenna (N0 / 2 per real dimension).

Channels: ``awgn`` (H = I, N_R = N_T); ``cross`` (fixed real H with 1 on the diagonal and
``cross`` everywhere off it, N_R = N_T); ``rayleigh`` (i.i.d. CN(0, 1) entries drawn per
sample, known exactly to the receiver).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
from numpy.typing import NDArray

ChannelKind = Literal["awgn", "cross", "rayleigh"]
CHANNEL_KINDS: tuple[ChannelKind, ...] = ("awgn", "cross", "rayleigh")
DEFAULT_CROSS = 0.3

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ChannelSpec:
    """Which channel, and its size: nt transmit and nr receive antennas."""

    kind: ChannelKind
    nt: int
    nr: int
    cross: float = DEFAULT_CROSS

    def __post_init__(self) -> None:
        if self.kind not in CHANNEL_KINDS:
            raise ValueError(
                f"channel: must be one of {', '.join(CHANNEL_KINDS)}, got {self.kind!r}"
            )
        if self.nt < 1:
            raise ValueError(f"nt: transmit antennas must be at least 1, got {self.nt}")
        if self.nr < 1:
            raise ValueError(f"nr: receive antennas must be at least 1, got {self.nr}")
        if self.kind != "rayleigh" and self.nr != self.nt:
            raise ValueError(
                f"nr: the {self.kind} channel has N_R = N_T = {self.nt}, got nr = {self.nr}"
            )
        if not np.isfinite(self.cross):
            raise ValueError(f"cross: must be a finite number, got {self.cross}")

    @property
    def is_fixed(self) -> bool:
        """True when H is the same for every sample (awgn, cross)."""
        return self.kind != "rayleigh"


def fixed_matrix(spec: ChannelSpec) -> ComplexArray:
    """The constant H (nr, nt) of the awgn and cross channels."""
    if spec.kind == "awgn":
        return np.eye(spec.nt, dtype=np.complex128)
    if spec.kind == "cross":
        h = np.full((spec.nt, spec.nt), spec.cross, dtype=np.complex128)
        np.fill_diagonal(h, 1.0)
        return h
    raise ValueError(f"channel: {spec.kind} has no fixed matrix")


def draw_channel(spec: ChannelSpec, batch: int, rng: np.random.Generator) -> ComplexArray:
    """H for each of `batch` samples, shape (batch, nr, nt); fixed channels are a broadcast view."""
    if spec.is_fixed:
        return np.broadcast_to(fixed_matrix(spec), (batch, spec.nr, spec.nt))
    shape = (batch, spec.nr, spec.nt)
    scale = np.sqrt(0.5)
    return np.asarray(scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))


@overload
def noise_n0(ebn0_db: float, k: int, es: float = 1.0) -> float: ...
@overload
def noise_n0(ebn0_db: FloatArray, k: int, es: float = 1.0) -> FloatArray: ...
def noise_n0(ebn0_db: float | FloatArray, k: int, es: float = 1.0) -> float | FloatArray:
    """Complex noise variance per receive antenna: N0 = Es / (k * 10^(Eb/N0 / 10)).

    Elementwise on an array of Eb/N0 values (training draws one per sample).
    """
    n0 = es / (k * 10.0 ** (np.asarray(ebn0_db, dtype=np.float64) / 10.0))
    return n0 if isinstance(ebn0_db, np.ndarray) else float(n0)


def complex_noise(shape: tuple[int, ...], n0: float, rng: np.random.Generator) -> ComplexArray:
    """CN(0, n0) samples: variance n0 / 2 per real dimension."""
    noise = rng.standard_normal((*shape, 2))
    noise *= np.sqrt(n0 / 2.0)
    return noise.view(np.complex128).reshape(shape)


def transmit(x: ComplexArray, h: ComplexArray, n0: float, rng: np.random.Generator) -> ComplexArray:
    """y = H x + n for x (batch, nt); h is (batch, nr, nt) or one (nr, nt) for all samples."""
    # einsum, not matmul: a product with a tiny inner dimension gains nothing from BLAS, and
    # BLAS threads on a busy machine made it several times slower.
    if h.ndim == 2:
        signal = np.einsum("bt,rt->br", x, h)
    elif h.strides[0] == 0:  # a broadcast fixed channel: one matrix for the batch
        signal = np.einsum("bt,rt->br", x, h[0])
    else:
        signal = np.einsum("brt,bt->br", h, x)
    y = complex_noise(signal.shape, n0, rng)
    y += signal
    return y
