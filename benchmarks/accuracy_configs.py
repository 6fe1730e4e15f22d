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


def _layers(text: str) -> list[dict[str, Any]]:
    """Layers from a compact text: `64:relu` (a dense layer, linear without its activation),
    `ln`, `bn`, `pn` (layer, batch, power norm), `act:tanh`, `emb:IN x OUT`,
    `channel:NR x USES` (complex channel), `noise:STDDEV` (Gaussian noise)."""
    norms = {"ln": "layer_norm", "bn": "batch_norm", "pn": "power_norm"}
    layers: list[dict[str, Any]] = []
    for token in text.split():
        name, _, argument = token.partition(":")
        first, _, second = argument.partition("x")
        if name.isdigit():
            layers.append(_dense(int(name), argument or "linear"))
        elif name == "act":
            layers.append({"type": "activation", "activation": argument})
        elif name == "emb":
            layers.append({"type": "embedding", "input_dim": int(first), "output_dim": int(second)})
        elif name == "channel":
            layers.append({"type": "complex_channel", "nr": int(first), "uses": int(second)})
        elif name == "noise":
            layers.append({"type": "gaussian_noise", "stddev": float(argument)})
        else:
            layers.append({"type": norms[name]})
    return layers


MSE, CE = "mse", "categorical_crossentropy"
BCE, SCE = "binary_crossentropy", "sparse_categorical_crossentropy"
# Generic models: input kind, input size, loss, layers (see _layers), batch, optimizer
# and, where it is not fp32, the precision.
GENERIC: tuple[tuple[Any, ...], ...] = (
    ("real", 16, MSE, "64:relu 64:tanh 16", 1000, "adam"),
    ("real", 8, MSE, "128:sigmoid ln 8", 77, "sgd"),
    ("bits", 12, BCE, "200:relu bn 200:softmax 12:sigmoid", 500, "momentum"),
    ("one_hot", 64, CE, "96:tanh 64:softmax", 333, "none"),
    ("index", 1, SCE, "emb:128x8 100:relu 128:softmax", 2500, "adam"),
    ("real", 32, MSE, "300 act:relu 300:sigmoid ln 32", 4096, "adam"),
    ("real", 10, MSE, "50:softmax 10", 3, "sgd"),
    ("bits", 8, BCE, "1024:relu bn 1024:relu bn 8:sigmoid", 1200, "adam"),
    ("real", 6, MSE, "64:relu 8 pn channel:3x2 noise:0.2 64:relu 6", 640, "momentum"),
    ("index", 1, SCE, "emb:1000x16 256:tanh 1000:softmax", 4000, "sgd"),
    ("bits", 20, BCE, "2500:relu 20:sigmoid", 50, "none"),
    ("real", 4, MSE, "4", 1, "none"),
    ("one_hot", 32, CE, "512:relu ln 512:sigmoid 32:softmax", 16, "adam", "mixed"),
    ("real", 16, MSE, "64:tanh 16", 5000, "none", "mixed"),
    ("bits", 6, BCE, "128:relu bn 6:sigmoid", 9, "momentum", "mixed"),
    ("index", 1, SCE, "emb:64x4 96:relu ln 64:softmax", 257, "sgd", "mixed"),
    ("one_hot", 24, MSE, "48:sigmoid 24", 31, "momentum"),
    ("real", 3, MSE, "2048:relu 3", 100, "momentum"),
    ("bits", 16, MSE, "32:tanh bn 32:relu ln 16", 1999, "sgd"),
    ("one_hot", 128, CE, "256:sigmoid 128:softmax", 60, "none", "mixed"),
    ("index", 1, SCE, "emb:500x12 64 act:tanh 500:softmax", 7, "momentum"),
)


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
    for kind, size, loss, layers, batch, optimizer, *precision in GENERIC:
        fields = dict(input_kind=kind, input_size=size, loss=loss, layers=_layers(layers))
        fields |= dict(batch=batch, optimizer=optimizer)
        specs.append(_model(**fields, **({"precision": precision[0]} if precision else {})))
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
