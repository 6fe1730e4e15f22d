"""Keras models built from a spec have the estimator's parameter counts, layer by layer."""

from __future__ import annotations

import pytest

from estimator.families import csinet, detnet
from estimator.spec import FamilySpec, ModelSpec

pytestmark = pytest.mark.tensorflow
tf = pytest.importorskip("tensorflow")

from profilers.builders import build, layer_params, make_batch  # noqa: E402

SMALL = {"k": 2, "nt": 2, "ht": 16, "hr": 32, "batch": 32}


def _generic(precision: str = "fp32", optimizer: str = "momentum") -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "input_kind": "real",
            "input_size": 6,
            "batch": 16,
            "precision": precision,
            "optimizer": optimizer,
            "loss": "mse",
            "layers": [
                {"type": "dense", "units": 8, "activation": "tanh"},
                {"type": "layer_norm"},
                {"type": "dense", "units": 4, "use_bias": False},
                {"type": "power_norm"},
                {"type": "complex_channel", "nr": 3},
                {"type": "gaussian_noise", "stddev": 0.2},
                {"type": "dense", "units": 5},
                {"type": "batch_norm"},
                {"type": "activation", "activation": "relu"},
                {"type": "dense", "units": 3},
            ],
        }
    )


CASES = [
    *(
        FamilySpec(family=family, precision=precision, **SMALL)  # type: ignore[arg-type]
        for family in ("ae", "ae-embedding", "bae", "tanh-bae")
        for precision in ("fp32", "mixed")
    ),
    FamilySpec(family="bae", k=3, nt=2, nr=3, n=2, ht=8, hr=16, batch=8, optimizer="sgd"),
    FamilySpec(family="ae", k=1, nt=2, ht=8, hr=16, batch=8, optimizer="none", decoder_blocks=1),
    _generic(),
    _generic("mixed", "adam"),
]


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.model_dump_json()[:60])
def test_parameters_match_estimator_and_a_step_runs(spec: FamilySpec | ModelSpec) -> None:
    built = build(spec)
    expected = [(r.trainable_params, r.non_trainable_params) for r in built.resolved]
    assert layer_params(built) == expected
    assert built.model.count_params() == sum(r.params for r in built.resolved)
    x, y = make_batch(spec)
    assert x.shape[0] == spec.batch
    loss = built.model.train_on_batch(x, y)
    assert loss == pytest.approx(float(loss))  # a finite number came back
    assert loss == loss


def test_mixed_policy_is_local_and_head_is_float32() -> None:
    import keras

    before = keras.mixed_precision.global_policy().name
    built = build(FamilySpec(family="bae", precision="mixed", **SMALL))  # type: ignore[arg-type]
    assert keras.mixed_precision.global_policy().name == before
    assert built.model.outputs[0].dtype == "float32"
    dense = built.groups[0][0]
    assert dense.compute_dtype == "float16" and dense.variable_dtype == "float32"


def test_families_use_table1_decoder_blocks() -> None:
    built = build(FamilySpec(family="bae", **SMALL))  # type: ignore[arg-type]
    assert sum(1 for r in built.resolved if r.type == "batch_norm") == 3


def test_make_batch_labels() -> None:
    x, y = make_batch(FamilySpec(family="ae", **SMALL))  # type: ignore[arg-type]
    assert (x.sum(axis=1) == 1).all() and (x == y).all()
    x, y = make_batch(FamilySpec(family="ae-embedding", **SMALL))  # type: ignore[arg-type]
    assert x.shape == (32, 1) and y.shape == (32,) and (x[:, 0] == y).all()
    x, y = make_batch(FamilySpec(family="bae", **SMALL))  # type: ignore[arg-type]
    assert set(x.ravel().tolist()) <= {0.0, 1.0} and (x == y).all()


def test_every_variable_exists_before_the_first_step() -> None:
    """Slots and seed state are made eagerly, not while the step function is traced (their
    lifted initialisers ran in a per-process order: profilers/allocator.py)."""
    built = build(FamilySpec(family="bae", **SMALL))  # type: ignore[arg-type]
    model = built.model
    assert model.optimizer.built
    slots = [v for v in model.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert len(slots) == 2 * len(model.trainable_variables)
    groups = zip(built.groups, built.resolved, strict=True)
    channel = next(g[0] for g, r in groups if r.type == "complex_channel")
    state = channel.seed_generator.state
    before = [id(v) for v in model.variables]
    x, y = make_batch(FamilySpec(family="bae", **SMALL))  # type: ignore[arg-type]
    model.train_on_batch(x, y)
    assert [id(v) for v in model.variables] == before and id(state) in before


def _conv_model() -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "input_kind": "real",
            "input_size": 32,
            "batch": 4,
            "layers": [
                {"type": "reshape", "target": [4, 4, 2]},
                {"type": "conv2d", "filters": 3, "kernel": 3, "activation": "relu"},
                {
                    "type": "residual",
                    "layers": [
                        {"type": "conv2d", "filters": 3, "kernel": 1, "use_bias": False},
                        {"type": "batch_norm"},
                        {"type": "leaky_relu", "alpha": 0.2},
                    ],
                },
                {"type": "conv2d", "filters": 2, "kernel": 2, "stride": 2, "padding": "valid"},
                {"type": "flatten"},
                {"type": "dense", "units": 32},
            ],
        }
    )


SEED_PAPER_CASES = [
    _conv_model(),
    *(csinet(gamma, batch=4) for gamma in ("1/4", "1/64")),
]


@pytest.mark.parametrize("spec", SEED_PAPER_CASES, ids=["conv", "csinet-1/4", "csinet-1/64"])
def test_conv_residual_and_csinet_match_keras_and_a_step_runs(spec: ModelSpec) -> None:
    built = build(spec)
    expected = [(r.trainable_params, r.non_trainable_params) for r in built.resolved]
    assert layer_params(built) == expected
    assert built.model.count_params() == sum(r.params for r in built.resolved)
    assert tuple(built.model.output_shape[1:]) == built.resolved[-1].out_shape
    x, y = make_batch(spec)
    loss = built.model.train_on_batch(x, y)
    assert loss == loss  # finite, not NaN


def test_detnet_builds_its_training_graph_and_a_step_runs() -> None:
    """A detnet-loss spec builds the graph the training job trains (every layer's x_hat
    out, Eq. (4)), with the spec's parameters, and a step runs on make_batch's shapes."""
    import numpy as np

    from profilers.training_builders import detnet_model

    spec = detnet(3, 5, 4, batch=2)
    built = build(spec, compile_model=False)
    assert layer_params(built) == [(r.trainable_params, 0) for r in built.resolved]
    assert (
        built.model.count_params()
        == sum(r.params for r in built.resolved)
        == 4 * ((9 + 6) * 24 + 24 + 24 * 3 + 3 + 24 * 6 + 6 + 1)
    )
    state = np.random.default_rng(0).standard_normal((2, spec.input_size)).astype("float32")
    out = np.asarray(built.model(state))
    assert out.shape == (2, 4 * 3)  # x_hat_1 .. x_hat_4
    assert np.abs(out).max() <= 1.0 + 1e-6  # each x_k through the soft sign
    trained = detnet_model(spec, 1e-3, seed=0).model
    assert [layer.name for layer in trained.layers] == [layer.name for layer in built.model.layers]
    assert trained.count_params() == built.model.count_params()
    compiled = build(spec)
    x, y = make_batch(spec)
    assert x.shape == (2, spec.input_size) and y.shape == (2, 2 * 3)  # labels [x | x_ZF]
    loss = compiled.model.train_on_batch(x, y)
    assert loss == loss  # finite, not NaN
