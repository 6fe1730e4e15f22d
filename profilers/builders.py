"""Keras models built from the same spec the estimator counts.

`build_model(spec)` turns a `FamilySpec` or a `ModelSpec` into a compiled Keras model
(TensorFlow backend), one Keras layer group per spec layer, so parameter counts can be
checked layer by layer against `estimator.layers.resolve`. Families expand the way the
framework mode counts them (`engine.model_for(spec, "framework")`: Table 1's 3 decoder
blocks unless the spec says otherwise).

Choices that the spec leaves open:

- optimizer "adam": Adam(learning_rate=1e-3) (the paper's); "sgd": SGD(1e-2);
  "momentum": SGD(1e-2, momentum=0.9); "none": SGD(learning_rate=0.0), i.e. forward,
  backward and a no-op update with no optimizer slots (the gradients still exist).
- precision "mixed": every layer gets the `mixed_float16` dtype policy (float32
  variables, float16 compute). The final softmax/sigmoid is split off into an
  `Activation` layer with the float32 policy, as the Keras mixed precision guide asks.
  No global policy is touched, so the builder has no lasting side effects.
- `jit_compile=False`: no XLA, so allocations go through TF's allocator op by op.
- The embedding layer is followed by a reshape to `input_size * output_dim` features.
- The complex channel draws a fresh Rayleigh matrix H (nr x nt, CN(0, 1) entries) per
  sample, shared by the sample's `uses` channel uses; reals are laid out as
  [Re x (uses*nt) | Im x (uses*nt)] and the output as [Re y | Im y]. Its random draws
  use the layer's own `SeedGenerator`, created with the layer.
- Every variable exists once `build` returns: the optimizer is built eagerly
  (`optimizer.build(model.trainable_variables)`: its slots are zeros filled one after
  another, in variable order), and the channel's seed generator is the layer's. Keras
  would otherwise create them while tracing the first train step, and tf.function lifts
  such initialisers into an `initialize_variables` graph whose op order (so where the
  slots land in the allocator) changed between processes (profilers/allocator.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimator.engine import model_for
from estimator.layers import ResolvedLayer, resolve
from estimator.spec import BlockLayerSpec, FamilySpec, LayerSpec, ModelSpec

SGD_LEARNING_RATE = 1e-2
ADAM_LEARNING_RATE = 1e-3
MOMENTUM = 0.9


def _keras() -> Any:
    """Keras 3, or tf-keras (Keras 2) in a process that set TF_USE_LEGACY_KERAS=1 before
    importing TensorFlow (the Model Optimization Toolkit works on tf-keras models only)."""
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        import tensorflow as tf

        return tf.keras
    import keras  # deferred: the estimator must import without TensorFlow

    return keras


def _custom_layers() -> tuple[type, type]:
    keras = _keras()
    from keras import ops

    layer: Any = keras.layers.Layer

    class PowerNormalization(layer):  # type: ignore[misc]
        """Scale the batch of symbols to unit average energy per complex symbol."""

        def call(self, x: Any) -> Any:
            energy = ops.mean(ops.square(x)) * 2.0  # Re^2 + Im^2 per complex value
            return x * ops.rsqrt(energy + 1e-12)

    class ComplexChannel(layer):  # type: ignore[misc]
        """y = H x per channel use, H ~ CN(0, I) of shape nr x nt drawn per sample."""

        def __init__(self, nt: int, nr: int, uses: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.nt, self.nr, self.uses = nt, nr, uses
            # created here (eagerly), not lazily while the step function is traced
            self.seed_generator = keras.random.SeedGenerator()

        def call(self, x: Any) -> Any:
            batch = ops.shape(x)[0]
            half = self.uses * self.nt
            xr = ops.reshape(x[:, :half], (batch, self.uses, self.nt))
            xi = ops.reshape(x[:, half:], (batch, self.uses, self.nt))
            scale = float(np.sqrt(0.5))
            shape, seed = (batch, self.nr, self.nt), self.seed_generator
            hr = keras.random.normal(shape, stddev=scale, dtype=x.dtype, seed=seed)
            hi = keras.random.normal(shape, stddev=scale, dtype=x.dtype, seed=seed)
            yr = ops.einsum("bij,buj->bui", hr, xr) - ops.einsum("bij,buj->bui", hi, xi)
            yi = ops.einsum("bij,buj->bui", hr, xi) + ops.einsum("bij,buj->bui", hi, xr)
            out = self.uses * self.nr
            return ops.concatenate(
                [ops.reshape(yr, (batch, out)), ops.reshape(yi, (batch, out))], axis=-1
            )

        def compute_output_shape(self, input_shape: Any) -> Any:
            return (input_shape[0], 2 * self.uses * self.nr)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "nt": self.nt, "nr": self.nr, "uses": self.uses}

    return PowerNormalization, ComplexChannel


def _detnet_layer_class() -> type:
    keras = _keras()
    from keras import ops

    layer: Any = keras.layers.Layer

    class DetNetLayer(layer):  # type: ignore[misc]
        """One unfolded DetNet iteration on [H^T y | H^T H | x_k | v_k] (Eq. (2))."""

        def __init__(self, transmitters: int, hidden: int, v: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.k, self.hidden, self.v = transmitters, hidden, v
            dtype = kwargs.get("dtype")
            self.w1 = keras.layers.Dense(hidden, activation="relu", dtype=dtype)
            self.w2 = keras.layers.Dense(transmitters, dtype=dtype)
            self.w3 = keras.layers.Dense(v, dtype=dtype)

        def build(self, input_shape: Any) -> None:
            k = self.k
            self.t = self.add_weight(shape=(), initializer="ones", name="t")
            self.w1.build((None, 3 * k + self.v))
            self.w2.build((None, self.hidden))
            self.w3.build((None, self.hidden))

        def call(self, state: Any) -> Any:
            k = self.k
            hty = state[:, :k]
            hth_flat = state[:, k : k + k * k]
            x = state[:, k + k * k : 2 * k + k * k]
            v = state[:, 2 * k + k * k :]
            hth = ops.reshape(hth_flat, (-1, k, k))
            hthx = ops.einsum("bij,bj->bi", hth, x)
            z = self.w1(ops.concatenate([hty, x, hthx, v], axis=-1))
            t = ops.abs(self.t) + 1e-6
            linear = self.w2(z)
            x_next = -1.0 + ops.relu(linear + t) / t - ops.relu(linear - t) / t  # psi_t
            return ops.concatenate([hty, hth_flat, x_next, self.w3(z)], axis=-1)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

    return DetNetLayer


@dataclass
class BuiltModel:
    """The compiled Keras model and, per spec layer, the Keras layers that implement it."""

    model: Any
    spec: ModelSpec
    resolved: list[ResolvedLayer]
    groups: list[list[Any]]


def _layer_group(
    layer: LayerSpec | BlockLayerSpec, resolved: ResolvedLayer, policy: str, last: bool, name: str
) -> list[Any]:
    keras = _keras()
    power_norm, complex_channel = _custom_layers()
    if layer.type in ("conv2d", "reshape", "flatten", "leaky_relu", "detnet_layer"):
        return _seed_paper_layer(layer, policy, name)
    if layer.type == "dense":
        split = policy == "mixed_float16" and last and layer.activation in ("softmax", "sigmoid")
        if split:
            return [
                keras.layers.Dense(layer.units, use_bias=layer.use_bias, dtype=policy, name=name),
                keras.layers.Activation(layer.activation, dtype="float32", name=f"{name}_act"),
            ]
        return [
            keras.layers.Dense(
                layer.units,
                activation=layer.activation,
                use_bias=layer.use_bias,
                dtype=policy,
                name=name,
            )
        ]
    if layer.type == "embedding":
        return [
            keras.layers.Embedding(layer.input_dim, layer.output_dim, dtype=policy, name=name),
            keras.layers.Reshape((resolved.out_features,), dtype=policy, name=f"{name}_flat"),
        ]
    if layer.type == "batch_norm":
        return [keras.layers.BatchNormalization(dtype=policy, name=name)]
    if layer.type == "layer_norm":
        return [keras.layers.LayerNormalization(dtype=policy, name=name)]
    if layer.type == "power_norm":
        return [power_norm(dtype=policy, name=name)]
    if layer.type == "activation":
        dtype = "float32" if last and policy == "mixed_float16" else policy
        return [keras.layers.Activation(layer.activation, dtype=dtype, name=name)]
    if layer.type == "gaussian_noise":
        return [keras.layers.GaussianNoise(layer.stddev, dtype=policy, name=name)]
    if layer.type == "complex_channel":
        nt = resolved.in_features // (2 * layer.uses)
        return [complex_channel(nt, layer.nr, layer.uses, dtype=policy, name=name)]
    raise ValueError(f"unknown layer type {layer.type!r}")


def _seed_paper_layer(layer: LayerSpec | BlockLayerSpec, policy: str, name: str) -> list[Any]:
    """The layers CsiNet and DetNet add: convolutions, views, LeakyReLU, a DetNet iteration."""
    keras = _keras()
    if layer.type == "conv2d":
        return [
            keras.layers.Conv2D(
                layer.filters,
                layer.kernel,
                strides=layer.stride,
                padding=layer.padding,
                activation=layer.activation,
                use_bias=layer.use_bias,
                dtype=policy,
                name=name,
            )
        ]
    if layer.type == "reshape":
        return [keras.layers.Reshape(tuple(layer.target), dtype=policy, name=name)]
    if layer.type == "flatten":
        return [keras.layers.Flatten(dtype=policy, name=name)]
    if layer.type == "leaky_relu":
        slope = "alpha" if os.environ.get("TF_USE_LEGACY_KERAS") == "1" else "negative_slope"
        return [keras.layers.LeakyReLU(**{slope: layer.alpha}, dtype=policy, name=name)]
    if layer.type == "detnet_layer":
        detnet_layer = _detnet_layer_class()
        return [detnet_layer(layer.transmitters, layer.hidden, layer.v, dtype=policy, name=name)]
    raise ValueError(f"unknown layer type {layer.type!r}")


def make_optimizer(name: str) -> Any:
    keras = _keras()
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=ADAM_LEARNING_RATE)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate=SGD_LEARNING_RATE, momentum=MOMENTUM)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=SGD_LEARNING_RATE)
    if name == "none":
        return keras.optimizers.SGD(learning_rate=0.0)
    raise ValueError(f"unknown optimizer {name!r}")


def build(
    spec: FamilySpec | ModelSpec, *, seed: int | None = 0, compile_model: bool = True
) -> BuiltModel:
    """The compiled model with its layer mapping (see `build_model`); `compile_model=False`
    leaves it uncompiled. A `detnet` loss builds the graph DetNet's training job trains
    (`profilers.training_builders.detnet_graph`: every layer's x_hat out, Eq. (4))."""
    keras = _keras()
    model_spec = model_for(spec, "framework")
    resolved = resolve(model_spec)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if model_spec.loss == "detnet":
        return _build_detnet(model_spec, resolved, compile_model)
    policy = "mixed_float16" if model_spec.precision == "mixed" else "float32"
    if model_spec.input_kind == "index":
        inputs = keras.Input(shape=(model_spec.input_size,), dtype="int32", name="message")
    else:
        inputs = keras.Input(shape=(model_spec.input_size,), dtype="float32", name="message")
    x = inputs
    groups: list[list[Any]] = []
    last_index = len(model_spec.layers) - 1
    for layer, info in zip(model_spec.layers, resolved, strict=True):
        last = info.index == last_index
        if layer.type == "residual":  # the block's layers, then their sum with the input
            group = []
            y = x
            for inner_layer, inner in zip(layer.layers, info.inner, strict=True):
                for keras_layer in _layer_group(
                    inner_layer, inner, policy, False, f"{info.name}_{inner.name}"
                ):
                    y = keras_layer(y)
                    group.append(keras_layer)
            add = keras.layers.Add(dtype=policy, name=f"{info.name}_add")
            x = add([x, y])
            group.append(add)
        else:
            group = _layer_group(layer, info, policy, last, info.name)
            for keras_layer in group:
                x = keras_layer(x)
        groups.append(group)
    model = keras.Model(inputs, x, name="phymem")
    if not compile_model:
        return BuiltModel(model, model_spec, resolved, groups)
    model.compile(
        optimizer=make_optimizer(model_spec.optimizer),
        loss=model_spec.loss,
        jit_compile=False,
    )
    model.optimizer.build(model.trainable_variables)  # eagerly (see the module docstring)
    return BuiltModel(model, model_spec, resolved, groups)


def _build_detnet(
    model_spec: ModelSpec, resolved: list[ResolvedLayer], compile_model: bool
) -> BuiltModel:
    """DetNet's training graph, compiled as `build` compiles any model (the optimizer's
    default learning rate, built eagerly)."""
    from profilers.training_builders import detnet_graph, detnet_loss

    if model_spec.precision == "mixed":
        raise ValueError("precision: the detnet training graph is built in float32 only")
    model, unfolded, _ = detnet_graph(model_spec)
    built = BuiltModel(model, model_spec, resolved, [[layer] for layer in unfolded])
    if compile_model:
        model.compile(
            optimizer=make_optimizer(model_spec.optimizer),
            loss=detnet_loss(model_spec),
            jit_compile=False,
        )
        model.optimizer.build(model.trainable_variables)
    return built


def build_deployed(spec: FamilySpec | ModelSpec, *, seed: int | None = 0) -> Any:
    """The uncompiled model as it is deployed, what TFLite converts and TFMOT compresses:
    the spec's layers alone. For a `detnet` loss that is the detector (state in, last
    state out); the training graph `build` makes adds every layer's x_hat for Eq. (4)."""
    model_spec = model_for(spec, "framework")
    if model_spec.loss == "detnet":  # any other loss builds the same layers; mse is plain
        model_spec = model_spec.model_copy(update={"loss": "mse"})
    return build(model_spec, seed=seed, compile_model=False).model


def build_model(spec: FamilySpec | ModelSpec, *, seed: int | None = 0) -> Any:
    """A compiled `keras.Model` for the spec (families expand as in the framework mode)."""
    return build(spec, seed=seed).model


def make_batch(
    spec: FamilySpec | ModelSpec, batch: int | None = None, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and labels for one step (labels are the inputs for autoencoders)."""
    model_spec = model_for(spec, "framework")
    resolved = resolve(model_spec)
    n = model_spec.batch if batch is None else batch
    rng = np.random.default_rng(seed)
    width, out = model_spec.input_size, resolved[-1].out_features

    messages: np.ndarray | None = None
    if model_spec.input_kind == "index":
        first = model_spec.layers[0]
        classes = first.input_dim if first.type == "embedding" else out
        messages = rng.integers(0, classes, size=(n, width), dtype=np.int32)
        x: np.ndarray = messages
    elif model_spec.input_kind == "one_hot":
        messages = rng.integers(0, width, size=n)
        x = np.zeros((n, width), dtype=np.float32)
        x[np.arange(n), messages] = 1.0
    elif model_spec.input_kind == "bits":
        x = rng.integers(0, 2, size=(n, width)).astype(np.float32)
    else:
        x = rng.standard_normal((n, width)).astype(np.float32)

    loss = model_spec.loss
    if loss == "detnet":  # labels [x | x_ZF]: random, as any memory measurement's
        first = model_spec.layers[0]
        assert first.type == "detnet_layer"
        y: np.ndarray = rng.standard_normal((n, 2 * first.transmitters)).astype(np.float32)
    elif loss == "sparse_categorical_crossentropy":
        if messages is not None and messages.shape[1] == 1 and int(messages.max()) < out:
            y = messages.reshape(n).astype(np.int32)
        else:
            y = rng.integers(0, out, size=n, dtype=np.int32)
    elif loss == "categorical_crossentropy":
        if model_spec.input_kind == "one_hot" and width == out:
            y = x
        else:
            y = np.zeros((n, out), dtype=np.float32)
            y[np.arange(n), rng.integers(0, out, size=n)] = 1.0
    elif loss == "binary_crossentropy":
        y = (
            x
            if model_spec.input_kind == "bits" and width == out
            else (rng.integers(0, 2, size=(n, out)).astype(np.float32))
        )
    else:
        y = (
            x
            if model_spec.input_kind == "real" and width == out
            else (rng.standard_normal((n, out)).astype(np.float32))
        )
    return x, y


def layer_params(built: BuiltModel) -> list[tuple[int, int]]:
    """(trainable, non-trainable) parameter counts per spec layer, from Keras."""
    counts = []
    for group in built.groups:
        trainable = sum(int(np.prod(w.shape)) for g in group for w in g.trainable_weights)
        frozen = sum(int(np.prod(w.shape)) for g in group for w in g.non_trainable_weights)
        counts.append((trainable, frozen))
    return counts
