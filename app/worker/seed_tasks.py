"""What a training job does for the two seed-paper families: its data, its metrics, its
evaluation. `app.worker.training` runs the same loop (checkpoints, progress, allocator
peak) for every family over a `Task`.

- CsiNet: batches of synthetic angular-delay channels (`profilers.phy.csi`), labels equal
  to the inputs; metrics NMSE (dB) and rho on a held-out set of `evaluate.test_samples`
  channels drawn from `evaluate.seed`; no BER rows.
- DetNet: fresh (H, x, y) per step (`profilers.phy.detection`), the SNR drawn per sample
  uniformly over `train.train_ebn0_db` (default the paper's 0-15 dB), labels [x | x_ZF];
  metric the BER at 12 dB (Monte Carlo to `evaluate.target_errors`), BER rows of DetNet,
  ZF and MMSE on the evaluation grid (SNR in dB).

Metrics are rows {name, value, ebn0_db, detail}; the loop asks for them once before the
first step (kept in the checkpoint: a resumed run still knows the untrained values) and
once after the last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from app.api.schemas import EvaluateParams, TrainParams
from estimator.spec import ModelSpec

DETNET_REPORT_SNR_DB = 12.0  # the papers' BER column
Batch = tuple[list[np.ndarray], np.ndarray]
OnPoint = Callable[[str, float], None]


class Task(Protocol):
    """One family's part of a training job."""

    model: Any  # the compiled Keras model the loop trains and checkpoints

    def batch(self, rng: np.random.Generator) -> Batch: ...

    def metrics(self, *, untrained: bool = False) -> list[dict[str, Any]]: ...

    def evaluate(self, on_point: OnPoint) -> list[dict[str, Any]]: ...


def metric(name: str, value: float, ebn0_db: float | None = None, **detail: Any) -> dict[str, Any]:
    return {"name": name, "value": float(value), "ebn0_db": ebn0_db, "detail": detail}


def _predict(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The model's inference (not training) output as numpy, in chunks."""
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False))

    def run(inputs: np.ndarray) -> np.ndarray:
        parts = [
            np.asarray(call(tf.constant(inputs[i : i + 4096]))) for i in range(0, len(inputs), 4096)
        ]
        return np.concatenate(parts, axis=0)

    return run


@dataclass
class CsiNetTask:
    spec: ModelSpec
    train: TrainParams
    evaluation: EvaluateParams
    model: Any = None
    _held_out: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from profilers.training_builders import csinet_model

        self.model = csinet_model(self.spec, float(self.train.lr or 0.0), self.train.seed).model

    def batch(self, rng: np.random.Generator) -> Batch:
        from profilers.phy import csi

        drawn = csi.draw(int(self.train.batch or self.spec.batch), rng)
        return [drawn.inputs], drawn.inputs

    def metrics(self, *, untrained: bool = False) -> list[dict[str, Any]]:
        from profilers.phy import csi

        if self._held_out is None:
            rng = np.random.default_rng(self.evaluation.seed)
            self._held_out = csi.draw(self.evaluation.test_samples, rng)
        held = self._held_out
        estimate = csi.from_inputs(_predict(self.model)(held.inputs))
        samples = self.evaluation.test_samples
        return [
            metric("nmse_db", csi.nmse_db(held.channels, estimate), samples=samples),
            metric("rho", csi.rho(held.channels, estimate), samples=samples),
        ]

    def evaluate(self, on_point: OnPoint) -> list[dict[str, Any]]:
        return []


@dataclass
class DetNetTask:
    spec: ModelSpec
    train: TrainParams
    evaluation: EvaluateParams
    model: Any = None
    detect_model: Any = None

    def __post_init__(self) -> None:
        from profilers.training_builders import detnet_model

        built = detnet_model(self.spec, float(self.train.lr or 0.0), self.train.seed)
        self.model, self.detect_model = built.model, built.detect

    @property
    def transmitters(self) -> int:
        first = self.spec.layers[0]
        assert first.type == "detnet_layer"
        return first.transmitters

    @property
    def receivers(self) -> int:
        return int(self.train.receivers or 0)

    def batch(self, rng: np.random.Generator) -> Batch:
        from profilers.phy import detection

        size = int(self.train.batch or self.spec.batch)
        low, high = _snr_range(self.train.train_ebn0_db)
        snr = rng.uniform(low, high, size=size)
        drawn = detection.draw(size, self.transmitters, self.receivers, snr, rng)
        x_zf = detection.zero_forcing(drawn.h, drawn.y)
        labels = np.concatenate([drawn.x, x_zf], axis=1).astype(np.float32)
        return [detection.network_input(drawn.h, drawn.y, self.state_width)], labels

    @property
    def state_width(self) -> int:
        """v, the width of the carried state (the spec's input is 2K + K^2 + v)."""
        k = self.transmitters
        return self.spec.input_size - 2 * k - k * k

    def _links(self) -> list[tuple[str, Any]]:
        from profilers.phy import detection

        k, n, v = self.transmitters, self.receivers, self.state_width
        predict = _predict(self.detect_model)

        def detnet(h: np.ndarray, y: np.ndarray, _sigma2: np.ndarray) -> np.ndarray:
            return predict(detection.network_input(h, y, v))

        links = [("detnet", detection.link(detnet, k, n))]
        links += [
            (b, detection.link(detection.BASELINES[b], k, n)) for b in self.evaluation.baselines
        ]
        return links

    def metrics(self, *, untrained: bool = False) -> list[dict[str, Any]]:
        """BER at 12 dB of DetNet (and, trained, of the baselines) from one seeded stream."""
        from profilers.phy.montecarlo import simulate_point

        detail: dict[str, Any] = {"snr_definition": "received power per antenna / noise variance"}
        value = 0.0
        links = self._links()
        for name, link in links[:1] if untrained else links:
            point = simulate_point(
                link,
                DETNET_REPORT_SNR_DB,
                detector=name,
                target_errors=self.evaluation.target_errors,
                max_bits=self.evaluation.max_bits,
                rng=np.random.default_rng(self.evaluation.seed),
            )
            if name == "detnet":
                value = point.ber
                detail.update(bits=point.bits, errors=point.bit_errors)
                detail.update(ci_low=point.ci_low, ci_high=point.ci_high)
            else:
                detail[f"{name}_ber"] = point.ber
        return [metric("ber", value, DETNET_REPORT_SNR_DB, **detail)]

    def evaluate(self, on_point: OnPoint) -> list[dict[str, Any]]:
        from app.worker.training import simulate_links

        return simulate_links(self._links(), self.evaluation, on_point)


def _snr_range(value: float | list[float]) -> tuple[float, float]:
    if isinstance(value, list):
        return float(value[0]), float(value[1])
    return float(value), float(value)


def make_task(kind: str, spec: ModelSpec, train: TrainParams, evaluation: EvaluateParams) -> Task:
    if kind == "csinet":
        return CsiNetTask(spec, train, evaluation)
    return DetNetTask(spec, train, evaluation)
