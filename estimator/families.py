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
    s = message_size(spec)
    blocks = decoder_blocks or spec.decoder_blocks or TABLE1_DECODER_BLOCKS
    encoder_activation: ActivationName = "tanh" if spec.family == "tanh-bae" else "relu"
    symbols = 2 * spec.n * spec.nt

    layers: list[Record] = []
    input_kind: InputKind
    loss: LossName
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
        record("Dense", units=spec.ht, activation=encoder_activation, part="encoder"),
        record("Dense", units=spec.ht, activation=encoder_activation, part="encoder"),
    ]
    if spec.family == "tanh-bae":
        layers.append(record("Dense", units=symbols, activation="tanh", part="encoder"))
    else:
        layers += [
            record("Dense", units=symbols, activation="linear", part="encoder"),
            record("PowerNormalization", part="encoder"),
        ]
    layers += [
        record("ComplexChannel", nr=receive_antennas(spec), uses=spec.n, part="channel"),
        record("GaussianNoise", part="channel"),
    ]
    for _ in range(blocks):
        layers += [
            record("Dense", units=spec.hr, activation="relu", part="decoder"),
            record("BatchNormalization", part="decoder"),
        ]
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
    model = record(
        "ModelSpec",
        input_kind=input_kind,
        input_size=input_size,
        layers=layers,
        loss=loss,
        batch=spec.batch,
        precision=spec.precision,
        optimizer=spec.optimizer,
    )
    return cast("ModelSpec", model)
