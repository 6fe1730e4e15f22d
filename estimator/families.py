"""The paper's MIMO autoencoders as generic layer lists (Table 1, Sections 4 and 5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from estimator.records import Record, record
from estimator.spec_base import MAX_MESSAGE_BITS as MAX_MESSAGE_BITS
from estimator.spec_base import ONE_HOT_FAMILIES as ONE_HOT_FAMILIES
from estimator.spec_base import ActivationName, InputKind, LossName, receive_antennas

if TYPE_CHECKING:
    from estimator.spec import FamilySpec, ModelSpec

TABLE1_DECODER_BLOCKS = 3
EQ2_DECODER_BLOCKS = 4  # Eq. (2) counts 3*H_R(H_R+1) + H_R(N_R+1) weights and 16*H_R BN params


def message_size(spec: FamilySpec) -> int:
    """S: the encoder input / decoder output width (exact, however large)."""
    if spec.family in ONE_HOT_FAMILIES:
        return int((2**spec.k) ** spec.nt)  # one value per joint message
    return spec.k * spec.nt  # bit-wise: one value per bit


def expand(spec: FamilySpec, *, decoder_blocks: int | None = None) -> ModelSpec:
    """The family's sequential model; `decoder_blocks` overrides the spec's default.

    The model is a record (`estimator.records`): built here from a valid family, it needs
    no validation, and expanding needs no pydantic.
    """
    blocks = decoder_blocks or spec.decoder_blocks or TABLE1_DECODER_BLOCKS
    input_kind, input_size, encoder = _encoder(spec)
    channel = [
        record("ComplexChannel", nr=receive_antennas(spec), uses=spec.n, part="channel"),
        record("GaussianNoise", part="channel"),
    ]
    loss, decoder = _decoder(spec, blocks)
    model = record(
        "ModelSpec",
        input_kind=input_kind,
        input_size=input_size,
        layers=encoder + channel + decoder,
        loss=loss,
        batch=spec.batch,
        precision=spec.precision,
        optimizer=spec.optimizer,
    )
    return cast("ModelSpec", model)


def _encoder(spec: FamilySpec) -> tuple[InputKind, int, list[Record]]:
    """The transmitter: its input kind and size, and its layers up to the channel."""
    s = message_size(spec)
    activation: ActivationName = "tanh" if spec.family == "tanh-bae" else "relu"
    symbols = 2 * spec.n * spec.nt
    layers: list[Record] = []
    input_kind: InputKind
    if spec.family == "ae-embedding":
        input_kind, input_size = "index", 1
        layers.append(
            record("Embedding", input_dim=s, output_dim=spec.embedding_size, part="encoder")
        )
    elif spec.family == "ae":
        input_kind, input_size = "one_hot", s
    else:
        input_kind, input_size = "bits", s
    layers += [
        record("Dense", units=spec.ht, activation=activation, part="encoder"),
        record("Dense", units=spec.ht, activation=activation, part="encoder"),
    ]
    if spec.family == "tanh-bae":
        layers.append(record("Dense", units=symbols, activation="tanh", part="encoder"))
    else:
        layers += [
            record("Dense", units=symbols, activation="linear", part="encoder"),
            record("PowerNormalization", part="encoder"),
        ]
    return input_kind, input_size, layers


def _decoder(spec: FamilySpec, blocks: int) -> tuple[LossName, list[Record]]:
    """The receiver after the channel: `blocks` Dense+BN blocks and the output, and its loss."""
    s = message_size(spec)
    layers: list[Record] = []
    for _ in range(blocks):
        layers += [
            record("Dense", units=spec.hr, activation="relu", part="decoder"),
            record("BatchNormalization", part="decoder"),
        ]
    loss: LossName
    if spec.family in ("ae", "ae-embedding"):
        layers.append(record("Dense", units=s, activation="softmax", part="decoder"))
        loss = (
            "sparse_categorical_crossentropy"
            if spec.family == "ae-embedding"
            else "categorical_crossentropy"
        )
    else:
        layers.append(record("Dense", units=s, activation="sigmoid", part="decoder"))
        loss = "binary_crossentropy"
    return loss, layers


# The two other seed papers' models, expanded straight into generic layer lists.

CSINET_GAMMAS = {"1/4": 4, "1/16": 16, "1/32": 32, "1/64": 64}  # gamma = 1 / divisor
CSINET_SHAPE = (32, 32, 2)  # N_t = 32 antennas x 32 delay taps, real and imaginary parts
CSINET_VALUES = 2 * 32 * 32  # 2048
CSINET_LEAK = 0.3


def _conv_bn_leaky(filters: int, part: str) -> list[Record]:
    return [
        record("Conv2D", filters=filters, kernel=3, part=part),
        record("BatchNormalization", part=part),
        record("LeakyReLU", alpha=CSINET_LEAK, part=part),
    ]


def csinet(gamma: str, *, batch: int = 200, optimizer: str = "adam") -> ModelSpec:
    """CsiNet (Wen et al.): M = 2048 * gamma codewords, two RefineNet blocks, MSE.

    The input arrives flat (2048 reals) and is reshaped to 32x32x2, channels last.
    """
    if gamma not in CSINET_GAMMAS:
        raise ValueError(f"gamma: {gamma!r} is not one of {', '.join(CSINET_GAMMAS)}")
    codewords = CSINET_VALUES // CSINET_GAMMAS[gamma]
    refine = record(
        "Residual",
        layers=[
            *_conv_bn_leaky(8, "decoder"),
            *_conv_bn_leaky(16, "decoder"),
            record("Conv2D", filters=2, kernel=3, part="decoder"),
            record("BatchNormalization", part="decoder"),
        ],
        part="decoder",
    )
    layers = [
        record("Reshape", target=list(CSINET_SHAPE), part="encoder"),
        *_conv_bn_leaky(2, "encoder"),
        record("Flatten", part="encoder"),
        record("Dense", units=codewords, part="encoder"),
        record("Dense", units=CSINET_VALUES, part="decoder"),
        record("Reshape", target=list(CSINET_SHAPE), part="decoder"),
        refine,
        record("LeakyReLU", alpha=CSINET_LEAK, part="decoder"),
        refine,
        record("LeakyReLU", alpha=CSINET_LEAK, part="decoder"),
        record("Conv2D", filters=2, kernel=3, activation="sigmoid", part="decoder"),
        record("Flatten", part="decoder"),
    ]
    model = record(
        "ModelSpec",
        input_kind="real",
        input_size=CSINET_VALUES,
        layers=layers,
        loss="mse",
        batch=batch,
        optimizer=optimizer,
    )
    return cast("ModelSpec", model)


DETNET_TRANSMITTERS = 20
DETNET_RECEIVERS = 30
DETNET_LAYERS = 90


def detnet(
    transmitters: int = DETNET_TRANSMITTERS,
    receivers: int = DETNET_RECEIVERS,
    layers: int = DETNET_LAYERS,
    *,
    batch: int = 5000,
    optimizer: str = "adam",
) -> ModelSpec:
    """DetNet (Samuel et al.) with z = 8K, v = 2K, `layers` unfolded iterations.

    The network sees H and y only through H^T y and H^T H (N enters the preprocessing, not
    the parameters), so the input is [H^T y | H^T H | x_1 = 0 | v_1 = 0] per sample.
    """
    for field, value in (("transmitters", transmitters), ("receivers", receivers)):
        if value < 1:
            raise ValueError(f"{field}: must be at least 1, got {value}")
    if not 1 <= layers <= 1024:
        raise ValueError(f"layers: must be between 1 and 1024, got {layers}")
    k, v = transmitters, 2 * transmitters
    unfolded = [
        record("DetNetLayer", transmitters=k, hidden=8 * k, v=v, part="decoder")
        for _ in range(layers)
    ]
    model = record(
        "ModelSpec",
        input_kind="real",
        input_size=k + k * k + k + v,
        layers=unfolded,
        loss="detnet",
        batch=batch,
        optimizer=optimizer,
    )
    return cast("ModelSpec", model)
