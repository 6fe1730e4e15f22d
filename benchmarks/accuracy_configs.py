"""The configurations the accuracy benchmark measures: a stratified grid and a seeded sample.

Both cover every axis the spec has (the four families and generic layer lists with each
activation, layer/batch norm, embedding inputs and each loss; optimizers none, sgd,
momentum, adam; fp32 and mixed; batches 1 to 5,000 with odd sizes; N_R != N_T; n = 2;
widths other than 256/2048). Sizes are chosen so one fresh-process measurement stays a
few seconds on a shared CPU: `profilers.budget` predicts each step's time, and the sampler
redraws a spec whose predicted profile is over `MAX_PROFILE_S` or whose peak is large.
"""

from __future__ import annotations

import random
from typing import Any

from estimator.spec import FamilySpec, ModelSpec
from profilers.budget import predicted_profile_s

AnySpec = FamilySpec | ModelSpec
MAX_PROFILE_S = 4.0  # predicted compute per measurement (warm-up + measured steps)
MAX_PEAK_BYTES = 1_500_000_000  # the machine is shared: keep each process small
OPTIMIZERS = ("none", "sgd", "momentum", "adam")
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")


def _family(family: str, **fields: Any) -> FamilySpec:
    return FamilySpec.model_validate({"family": family, **fields})


def _model(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate(fields)


def _dense(units: int, activation: str = "linear") -> dict[str, Any]:
    return {"type": "dense", "units": units, "activation": activation}


def grid() -> list[AnySpec]:
    """The stratified grid: every family x optimizer in fp32 and in mixed precision,
    generic layer lists for every activation, norm, input kind and loss, and the
    off-the-grid cases the issue reported."""
    specs: list[AnySpec] = []
    # fp32: each family with each optimizer, batches across the bands, widths, N_R, n
    fp32 = {
        "bae": [
            dict(k=2, nt=2, batch=1),
            dict(k=3, nt=2, nr=4, batch=300, ht=128, hr=512),
            dict(k=2, nt=3, n=2, batch=129, hr=1024),
            dict(k=6, nt=4, batch=2048, hr=1024),
            dict(k=1, nt=8, batch=4),
        ],
        "tanh-bae": [
            dict(k=4, nt=4, nr=2, batch=2047, ht=96, hr=384),
            dict(k=2, nt=2, batch=255),
            dict(k=3, nt=2, n=2, batch=7, hr=1536),
            dict(k=6, nt=2, batch=4999, ht=64, hr=320),
            dict(k=5, nt=3, nr=5, batch=12),
        ],
        "ae": [
            dict(k=2, nt=2, batch=1),
            dict(k=4, nt=3, batch=300),
            dict(k=3, nt=2, nr=3, batch=513, hr=1024),
            dict(k=4, nt=2, batch=256),
            dict(k=1, nt=4, batch=2000, ht=200, hr=600),
        ],
        "ae-embedding": [
            dict(k=2, nt=2, batch=3, embedding_size=4),
            dict(k=4, nt=2, batch=999, hr=768),
            dict(k=3, nt=3, n=2, batch=64, hr=512),
            dict(k=6, nt=2, batch=3000, ht=128, hr=384),
            dict(k=5, nt=2, batch=150),
        ],
    }
    for family, rows in fp32.items():
        for index, row in enumerate(rows):
            optimizer = OPTIMIZERS[index % 4]
            specs.append(_family(family, optimizer=optimizer, **row))
    # mixed precision: float16 compute is slow on some CPUs, so these are small models
    mixed = {
        "bae": [
            dict(k=2, nt=2, batch=1),
            dict(k=4, nt=2, batch=16, hr=1024),
            dict(k=3, nt=2, nr=3, n=2, batch=100, ht=64, hr=320),
            dict(k=6, nt=4, batch=5000, ht=32, hr=64),
            dict(k=2, nt=2, batch=4999, ht=32, hr=64),
        ],
        "tanh-bae": [
            dict(k=2, nt=2, batch=33, hr=512),
            dict(k=4, nt=4, nr=2, batch=511, ht=64, hr=128),
            dict(k=2, nt=3, batch=2, hr=768),
            dict(k=3, nt=2, batch=1500, ht=48, hr=96),
        ],
        "ae": [
            dict(k=2, nt=2, batch=8, ht=128, hr=512),
            dict(k=4, nt=2, batch=255, ht=128, hr=128),
            dict(k=2, nt=3, n=2, batch=1, hr=640),
            dict(k=3, nt=2, nr=3, batch=1000, ht=64, hr=96),
        ],
        "ae-embedding": [
            dict(k=3, nt=2, batch=5, hr=768),
            dict(k=2, nt=2, batch=400, ht=64, hr=192),
            dict(k=4, nt=2, nr=3, batch=17, hr=512, embedding_size=3),
            dict(k=2, nt=3, batch=2500, ht=32, hr=64),
        ],
    }
    for family, rows in mixed.items():
        for index, row in enumerate(rows):
            optimizer = OPTIMIZERS[(index + 1) % 4]
            specs.append(_family(family, optimizer=optimizer, precision="mixed", **row))
    # generic layer lists: each activation, layer/batch norm, each input kind and loss
    generic: list[dict[str, Any]] = [
        dict(
            input_kind="real",
            input_size=16,
            loss="mse",
            layers=[_dense(64, "relu"), _dense(64, "tanh"), _dense(16)],
            batch=1000,
            optimizer="adam",
        ),
        dict(
            input_kind="real",
            input_size=8,
            loss="mse",
            layers=[_dense(128, "sigmoid"), {"type": "layer_norm"}, _dense(8)],
            batch=77,
            optimizer="sgd",
        ),
        dict(
            input_kind="bits",
            input_size=12,
            loss="binary_crossentropy",
            layers=[
                _dense(200, "relu"),
                {"type": "batch_norm"},
                _dense(200, "softmax"),
                _dense(12, "sigmoid"),
            ],
            batch=500,
            optimizer="momentum",
        ),
        dict(
            input_kind="one_hot",
            input_size=64,
            loss="categorical_crossentropy",
            layers=[_dense(96, "tanh"), _dense(64, "softmax")],
            batch=333,
            optimizer="none",
        ),
        dict(
            input_kind="index",
            input_size=1,
            loss="sparse_categorical_crossentropy",
            layers=[
                {"type": "embedding", "input_dim": 128, "output_dim": 8},
                _dense(100, "relu"),
                _dense(128, "softmax"),
            ],
            batch=2500,
            optimizer="adam",
        ),
        dict(
            input_kind="real",
            input_size=32,
            loss="mse",
            layers=[
                _dense(300),
                {"type": "activation", "activation": "relu"},
                _dense(300, "sigmoid"),
                {"type": "layer_norm"},
                _dense(32),
            ],
            batch=4096,
            optimizer="adam",
        ),
        dict(
            input_kind="real",
            input_size=10,
            loss="mse",
            layers=[_dense(50, "softmax"), _dense(10)],
            batch=3,
            optimizer="sgd",
        ),
        dict(
            input_kind="bits",
            input_size=8,
            loss="binary_crossentropy",
            layers=[
                _dense(1024, "relu"),
                {"type": "batch_norm"},
                _dense(1024, "relu"),
                {"type": "batch_norm"},
                _dense(8, "sigmoid"),
            ],
            batch=1200,
            optimizer="adam",
        ),
        dict(
            input_kind="real",
            input_size=6,
            loss="mse",
            layers=[
                _dense(64, "relu"),
                _dense(8),
                {"type": "power_norm"},
                {"type": "complex_channel", "nr": 3, "uses": 2},
                {"type": "gaussian_noise", "stddev": 0.2},
                _dense(64, "relu"),
                _dense(6),
            ],
            batch=640,
            optimizer="momentum",
        ),
        dict(
            input_kind="index",
            input_size=1,
            loss="sparse_categorical_crossentropy",
            layers=[
                {"type": "embedding", "input_dim": 1000, "output_dim": 16},
                _dense(256, "tanh"),
                _dense(1000, "softmax"),
            ],
            batch=4000,
            optimizer="sgd",
        ),
        dict(
            input_kind="bits",
            input_size=20,
            loss="binary_crossentropy",
            layers=[_dense(2500, "relu"), _dense(20, "sigmoid")],
            batch=50,
            optimizer="none",
        ),
        dict(
            input_kind="real",
            input_size=4,
            loss="mse",
            layers=[_dense(4)],
            batch=1,
            optimizer="none",
        ),
        dict(
            input_kind="one_hot",
            input_size=32,
            loss="categorical_crossentropy",
            layers=[
                _dense(512, "relu"),
                {"type": "layer_norm"},
                _dense(512, "sigmoid"),
                _dense(32, "softmax"),
            ],
            batch=16,
            optimizer="adam",
            precision="mixed",
        ),
        dict(
            input_kind="real",
            input_size=16,
            loss="mse",
            layers=[_dense(64, "tanh"), _dense(16)],
            batch=5000,
            optimizer="none",
            precision="mixed",
        ),
        dict(
            input_kind="bits",
            input_size=6,
            loss="binary_crossentropy",
            layers=[_dense(128, "relu"), {"type": "batch_norm"}, _dense(6, "sigmoid")],
            batch=9,
            optimizer="momentum",
            precision="mixed",
        ),
        dict(
            input_kind="index",
            input_size=1,
            loss="sparse_categorical_crossentropy",
            layers=[
                {"type": "embedding", "input_dim": 64, "output_dim": 4},
                _dense(96, "relu"),
                {"type": "layer_norm"},
                _dense(64, "softmax"),
            ],
            batch=257,
            optimizer="sgd",
            precision="mixed",
        ),
        dict(
            input_kind="one_hot",
            input_size=24,
            loss="mse",
            layers=[_dense(48, "sigmoid"), _dense(24, "linear")],
            batch=31,
            optimizer="momentum",
        ),
        dict(
            input_kind="real",
            input_size=3,
            loss="mse",
            layers=[_dense(2048, "relu"), _dense(3)],
            batch=100,
            optimizer="momentum",
        ),
        dict(
            input_kind="bits",
            input_size=16,
            loss="mse",
            layers=[
                _dense(32, "tanh"),
                {"type": "batch_norm"},
                _dense(32, "relu"),
                {"type": "layer_norm"},
                _dense(16),
            ],
            batch=1999,
            optimizer="sgd",
        ),
        dict(
            input_kind="one_hot",
            input_size=128,
            loss="categorical_crossentropy",
            layers=[_dense(256, "sigmoid"), _dense(128, "softmax")],
            batch=60,
            optimizer="none",
            precision="mixed",
        ),
        dict(
            input_kind="index",
            input_size=1,
            loss="sparse_categorical_crossentropy",
            layers=[
                {"type": "embedding", "input_dim": 500, "output_dim": 12},
                _dense(64),
                {"type": "activation", "activation": "tanh"},
                _dense(500, "softmax"),
            ],
            batch=7,
            optimizer="momentum",
        ),
    ]
    specs += [_model(**fields) for fields in generic]
    # the off-the-grid reports, and a width beyond 2,048
    specs += [
        _family("bae", k=2, nt=2, batch=3, optimizer="sgd"),
        _family("bae", k=2, nt=2, batch=256, ht=512, hr=4096),
        _family("bae", k=8, nt=16, batch=64, optimizer="sgd"),
    ]
    return specs


def _draw_family(rng: random.Random) -> FamilySpec:
    family = rng.choice(("ae", "ae-embedding", "bae", "tanh-bae"))
    one_hot = family in ("ae", "ae-embedding")
    while True:
        k = rng.randint(1, 6 if one_hot else 8)
        nt = rng.randint(1, 4 if one_hot else 16)
        if not one_hot or k * nt <= 12:
            break
    fields: dict[str, Any] = {"k": k, "nt": nt}
    if rng.random() < 0.3:
        fields["nr"] = rng.randint(1, 2 * nt)
    if rng.random() < 0.2:
        fields["n"] = 2
    fields["ht"] = int(2 ** rng.uniform(4, 9.5))  # 16 .. 724
    fields["hr"] = int(2 ** rng.uniform(5, 12.2))  # 32 .. 4700
    if family == "ae-embedding" and rng.random() < 0.5:
        fields["embedding_size"] = rng.randint(1, 8)
    return _family(family, **fields)


def _draw_model(rng: random.Random) -> ModelSpec:
    input_kind = rng.choice(("one_hot", "bits", "index", "real"))
    loss = {
        "one_hot": rng.choice(("categorical_crossentropy", "mse")),
        "bits": rng.choice(("binary_crossentropy", "mse")),
        "index": "sparse_categorical_crossentropy",
        "real": "mse",
    }[input_kind]
    size = rng.randint(2, 256)
    layers: list[dict[str, Any]] = []
    input_size = size
    if input_kind == "index":
        input_size = 1
        layers.append({"type": "embedding", "input_dim": size, "output_dim": rng.randint(2, 32)})
    for _ in range(rng.randint(1, 4)):
        layers.append(_dense(int(2 ** rng.uniform(3, 11.5)), rng.choice(ACTIVATIONS)))
        extra = rng.random()
        if extra < 0.2:
            layers.append({"type": "layer_norm"})
        elif extra < 0.4:
            layers.append({"type": "batch_norm"})
        elif extra < 0.5:
            layers.append({"type": "activation", "activation": rng.choice(ACTIVATIONS)})
    final = {
        "categorical_crossentropy": "softmax",
        "sparse_categorical_crossentropy": "softmax",
        "binary_crossentropy": "sigmoid",
        "mse": "linear",
    }[loss]
    layers.append(_dense(size, final))
    return _model(input_kind=input_kind, input_size=input_size, loss=loss, layers=layers)


def rough_bytes(spec: AnySpec) -> int:
    """A size class for the sampler, independent of the estimator (so a seed draws the same
    specs whatever the engine): 4 float32 copies of the parameters and of every layer's
    output per sample."""
    from estimator.engine import model_for
    from estimator.layers import resolve

    layers = resolve(model_for(spec, "framework"))
    params = sum(layer.params for layer in layers)
    values = sum(layer.out_features for layer in layers) + layers[0].in_features
    return 16 * (params + spec.batch * values)


def _cheap_enough(spec: AnySpec) -> bool:
    return predicted_profile_s(spec) <= MAX_PROFILE_S and rough_bytes(spec) <= MAX_PEAK_BYTES


def sample(seed: int, count: int = 40) -> list[AnySpec]:
    """`count` specs drawn over the same axes as the grid; the same seed, the same specs."""
    rng = random.Random(seed)
    specs: list[AnySpec] = []
    seen: set[str] = set()
    while len(specs) < count:
        base: AnySpec = _draw_family(rng) if rng.random() < 0.7 else _draw_model(rng)
        training = {
            "optimizer": rng.choice(OPTIMIZERS),
            "precision": "mixed" if rng.random() < 0.3 else "fp32",
            "batch": max(1, min(5000, round(10 ** rng.uniform(0, 3.7)))),
        }
        spec = base.model_copy(update=training)
        spec = type(spec).model_validate(spec.model_dump())
        while not _cheap_enough(spec) and spec.batch > 1:  # shrink the batch, keep the rest
            spec = spec.model_copy(update={"batch": max(1, spec.batch // 3)})
        key = spec.model_dump_json()
        if _cheap_enough(spec) and key not in seen:
            seen.add(key)
            specs.append(spec)
    return specs
