"""Keras training models of the two seed-paper families beside the autoencoders: CsiNet
(the spec's layers as `profilers.builders` builds them, MSE against its own input) and
DetNet (the spec's unfolded layers, every layer's estimate x_hat_l out, trained with the
green-DetNet paper's Eq. (4)).

Both keep the spec's layers and parameter counts; DetNet's training graph adds the
per-layer outputs its loss needs (the estimator's spec counts one output, so its memory
estimate is of a slightly smaller graph).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from estimator.spec import ModelSpec


@dataclass
class SeedModel:
    """The compiled model, and `detect` for DetNet: state in, last layer's x_hat out."""

    model: Any
    detect: Any = None


@functools.cache
def _registered() -> tuple[type, type]:
    """DetNet's layer (registered so a saved model loads by name) and the layer that
    gathers each unfolded layer's x_hat into one (B, L*K) output."""
    import keras
    from keras import ops

    from profilers.builders import _detnet_layer_class

    detnet_layer = keras.saving.register_keras_serializable(package="phymem")(_detnet_layer_class())

    @keras.saving.register_keras_serializable(package="phymem")
    class LayerEstimates(keras.layers.Layer):  # type: ignore[misc]
        """[x_hat_1 | ... | x_hat_L] from the L states [H^T y | H^T H | x | v]."""

        def __init__(self, transmitters: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.k = transmitters

        def call(self, states: list[Any]) -> Any:
            start = self.k + self.k * self.k
            return ops.concatenate([s[:, start : start + self.k] for s in states], axis=-1)

        def compute_output_shape(self, input_shapes: Any) -> Any:
            return (input_shapes[0][0], self.k * len(input_shapes))

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "transmitters": self.k}

    return detnet_layer, LayerEstimates


def eq4_loss(layers: int, transmitters: int) -> Any:
    """Eq. (4) per sample (Keras averages over the batch): labels [x | x_ZF] (B, 2K),
    predictions [x_hat_1 | ... | x_hat_L] (B, L*K); sum_l log(l) ||x - x_hat_l||^2 /
    ||x - x_ZF||^2, as `profilers.phy.detection.eq4_loss` computes it in numpy."""
    from keras import ops

    def detnet_eq4(y_true: Any, y_pred: Any) -> Any:
        k = transmitters
        x, zf = y_true[:, :k], y_true[:, k:]
        estimates = ops.reshape(y_pred, (-1, layers, k))
        errors = ops.sum(ops.square(ops.expand_dims(x, 1) - estimates), axis=2)
        weights = ops.log(ops.arange(1, layers + 1, dtype=y_pred.dtype))
        reference = ops.sum(ops.square(x - zf), axis=1)
        return ops.sum(errors * weights, axis=1) / reference

    return detnet_eq4


def _compile(model: Any, spec: ModelSpec, lr: float, loss: Any) -> None:
    from profilers.builders import make_optimizer

    optimizer = make_optimizer(spec.optimizer)
    optimizer.learning_rate = lr
    model.compile(optimizer=optimizer, loss=loss, jit_compile=False)
    model.optimizer.build(model.trainable_variables)  # eagerly, as profilers.builders does


def csinet_model(spec: ModelSpec, lr: float, seed: int) -> SeedModel:
    """The spec's CsiNet, trained on MSE between its output and its input."""
    from profilers.builders import build

    built = build(spec, seed=seed, compile_model=False)
    _compile(built.model, spec, lr, "mse")
    return SeedModel(built.model)


def detnet_graph(spec: ModelSpec) -> tuple[Any, list[Any], Any]:
    """The graph a `detnet` spec trains: the spec's unfolded DetNet layers on the state
    [H^T y | H^T H | x | v], every layer's x_hat gathered into one (B, L*K) output. Returns
    the uncompiled model, its DetNet layers (one per spec layer) and the last state; shared
    by the training job (`detnet_model`) and the measurement (`profilers.builders.build`),
    so both measure and train the same graph."""
    import keras

    from estimator.layers import resolve

    detnet_layer, layer_estimates = _registered()
    resolved = resolve(spec)
    first = spec.layers[0]
    assert first.type == "detnet_layer"
    k = first.transmitters
    state = keras.Input(shape=(spec.input_size,), dtype="float32", name="state")
    current, states, unfolded = state, [], []
    for layer, info in zip(spec.layers, resolved, strict=True):
        assert layer.type == "detnet_layer"
        unfolded.append(detnet_layer(layer.transmitters, layer.hidden, layer.v, name=info.name))
        current = unfolded[-1](current)
        states.append(current)
    estimates = layer_estimates(k, name="estimates")(states)
    return keras.Model(state, estimates, name="detnet_train"), unfolded, current


def detnet_loss(spec: ModelSpec) -> Any:
    """Eq. (4) for the spec's layer count and K."""
    first = spec.layers[0]
    assert first.type == "detnet_layer"
    return eq4_loss(len(spec.layers), first.transmitters)


def detnet_model(spec: ModelSpec, lr: float, seed: int) -> SeedModel:
    """The spec's unfolded DetNet layers, every layer's x_hat out, Eq. (4) loss."""
    import keras

    _, layer_estimates = _registered()
    keras.utils.set_random_seed(seed)
    model, _, last_state = detnet_graph(spec)
    _compile(model, spec, lr, detnet_loss(spec))
    k = model.output_shape[-1] // len(spec.layers)
    last = layer_estimates(k, name="last_estimate")([last_state])
    return SeedModel(model, keras.Model(model.input, last, name="detnet_detect"))
