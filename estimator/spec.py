"""The architecture spec: one pydantic schema for the CLI, the API, the builders and the DB.

A spec is either a *family* (one of the paper's MIMO autoencoders, described by k, N_T, ...)
or a generic *model* (an input and a sequential list of layers). Families expand into the
generic form (see `estimator.families`); everything downstream works on layers.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    model_validator,
)

from estimator.families import csinet, detnet
from estimator.layers import resolve
from estimator.records import SCHEMA_PATH
from estimator.records import canonical_json as canonical_json
from estimator.records import spec_hash as spec_hash
from estimator.spec_base import MAX_DECODER_BLOCKS as MAX_DECODER_BLOCKS
from estimator.spec_base import MAX_DIMENSION as MAX_DIMENSION
from estimator.spec_base import MAX_LAYERS as MAX_LAYERS
from estimator.spec_base import MAX_MESSAGE_BITS as MAX_MESSAGE_BITS
from estimator.spec_base import ONE_HOT_FAMILIES as ONE_HOT_FAMILIES
from estimator.spec_base import ActivationName as ActivationName
from estimator.spec_base import FamilyName as FamilyName
from estimator.spec_base import InputKind as InputKind
from estimator.spec_base import LossName as LossName
from estimator.spec_base import OptimizerName as OptimizerName
from estimator.spec_base import Padding as Padding
from estimator.spec_base import Part as Part
from estimator.spec_base import Precision as Precision
from estimator.spec_base import check_message_space, receive_antennas, spec_kind

PositiveInt = Annotated[int, Field(ge=1)]
Dimension = Annotated[int, Field(ge=1, le=MAX_DIMENSION)]


# Printable text only: a NUL or another control character is refused at validation (the
# same answer on every database; PostgreSQL cannot store NUL in text).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)


def _type_required(schema: dict[str, Any]) -> None:
    # The layer union is discriminated by `type`: the published schema says it is required.
    required = schema.setdefault("required", [])
    if "type" in schema.get("properties", {}) and "type" not in required:
        required.insert(0, "type")


class _LayerBase(_Strict):
    model_config = ConfigDict(json_schema_extra=_type_required)

    name: str | None = Field(
        default=None, max_length=200, pattern=PRINTABLE, description="Optional display name."
    )
    part: Part | None = Field(default=None, description="Encoder, channel or decoder.")


class Dense(_LayerBase):
    type: Literal["dense"] = "dense"
    units: PositiveInt
    activation: ActivationName = "linear"
    use_bias: bool = True


class Embedding(_LayerBase):
    """Integer message index -> learned vector (input must be `index` of size 1)."""

    type: Literal["embedding"] = "embedding"
    input_dim: PositiveInt
    output_dim: PositiveInt


class BatchNormalization(_LayerBase):
    type: Literal["batch_norm"] = "batch_norm"


class LayerNormalization(_LayerBase):
    type: Literal["layer_norm"] = "layer_norm"


class PowerNormalization(_LayerBase):
    """Table 1's 'Normalization': scales the batch of symbols to unit average energy."""

    type: Literal["power_norm"] = "power_norm"


class Activation(_LayerBase):
    type: Literal["activation"] = "activation"
    activation: ActivationName


class GaussianNoise(_LayerBase):
    type: Literal["gaussian_noise"] = "gaussian_noise"
    stddev: float = Field(default=0.1, gt=0, le=1, description="At most 1, as Keras allows.")


class ComplexChannel(_LayerBase):
    """Random complex MIMO channel y = H x over `uses` channel uses.

    Input is 2*uses*N_T reals (real and imaginary parts), output 2*uses*N_R.
    """

    type: Literal["complex_channel"] = "complex_channel"
    nr: PositiveInt
    uses: PositiveInt = 1


class Conv2D(_LayerBase):
    """2-D convolution over a (height, width, channels) input, channels last as Keras."""

    type: Literal["conv2d"] = "conv2d"
    filters: PositiveInt
    kernel: PositiveInt = Field(default=3, description="Square kernel side.")
    stride: PositiveInt = 1
    padding: Padding = "same"
    activation: ActivationName = "linear"
    use_bias: bool = True


class Reshape(_LayerBase):
    """Reshape each sample to `target` (same number of values)."""

    type: Literal["reshape"] = "reshape"
    target: list[PositiveInt] = Field(min_length=1, max_length=3)


class Flatten(_LayerBase):
    type: Literal["flatten"] = "flatten"


class LeakyReLU(_LayerBase):
    type: Literal["leaky_relu"] = "leaky_relu"
    alpha: float = Field(default=0.3, ge=0, description="Slope below zero (Keras' negative_slope).")


class DetNetLayer(_LayerBase):
    """One unfolded DetNet iteration (Eq. (2) of the green-DetNet paper).

    Its input and output are [H^T y (K) | H^T H (K*K) | x_k (K) | v_k (v)] per sample; it
    computes z = relu(W1 [H^T y, x_k, H^T H x_k, v_k] + b1), x_{k+1} = psi_t(W2 z + b2),
    v_{k+1} = W3 z + b3, with a trainable soft-sign threshold t.
    """

    type: Literal["detnet_layer"] = "detnet_layer"
    transmitters: PositiveInt = Field(description="K.")
    hidden: PositiveInt = Field(description="z, the width of the hidden layer.")
    v: PositiveInt = Field(description="Width of the carried state v_k.")


BlockLayerSpec = Annotated[
    Dense
    | BatchNormalization
    | LayerNormalization
    | Activation
    | Conv2D
    | Reshape
    | Flatten
    | LeakyReLU,
    Field(discriminator="type"),
]


class Residual(_LayerBase):
    """A block of layers whose output is added to its input (same shape in and out)."""

    type: Literal["residual"] = "residual"
    layers: list[BlockLayerSpec] = Field(min_length=1, max_length=MAX_LAYERS)


LayerSpec = Annotated[
    Dense
    | Embedding
    | BatchNormalization
    | LayerNormalization
    | PowerNormalization
    | Activation
    | GaussianNoise
    | ComplexChannel
    | Conv2D
    | Reshape
    | Flatten
    | LeakyReLU
    | Residual
    | DetNetLayer,
    Field(discriminator="type"),
]


class _Training(_Strict):
    batch: PositiveInt = Field(default=2048, description="Training batch size.")
    precision: Precision = Field(default="fp32", description="'mixed' computes in float16.")
    optimizer: OptimizerName = "adam"


class ModelSpec(_Training):
    """A generic sequential model: an input and a list of layers."""

    input_kind: InputKind = Field(description="How a sample enters the network.")
    input_size: PositiveInt = Field(description="Features per sample (1 for an index).")
    layers: list[LayerSpec] = Field(min_length=1, max_length=MAX_LAYERS)
    loss: LossName = "mse"

    @model_validator(mode="after")
    def _shapes_match(self) -> ModelSpec:
        resolve(self)  # raises ValueError naming layers[i] on a mismatch
        return self


class FamilySpec(_Training):
    """One of the paper's MIMO autoencoders (Table 1 and Sections 4-5)."""

    family: FamilyName
    k: int = Field(
        ge=1, le=MAX_MESSAGE_BITS, description="Bits per antenna (constellation of 2^k points)."
    )
    nt: Dimension = Field(description="Transmit antennas N_T.")
    nr: Dimension | None = Field(default=None, description="Receive antennas; default N_T.")
    n: Dimension = Field(default=1, description="Channel uses N.")
    ht: Dimension = Field(default=256, description="Encoder width H_T.")
    hr: Dimension = Field(default=2048, description="Decoder width H_R.")
    embedding_size: Dimension = Field(default=2, description="E, for ae-embedding.")
    decoder_blocks: PositiveInt | None = Field(
        default=None,
        le=MAX_DECODER_BLOCKS,
        description="Dense+BatchNorm blocks in the decoder; default Table 1's 3 "
        "(the paper mode follows Eq. (2), which counts 4).",
    )

    @model_validator(mode="after")
    def _message_space_bounded(self) -> FamilySpec:
        check_message_space(self.family, self.k, self.nt)
        return self

    @property
    def receive_antennas(self) -> int:
        return receive_antennas(self)


Spec = Annotated[
    Annotated[FamilySpec, Tag("family")] | Annotated[ModelSpec, Tag("model")],
    Discriminator(spec_kind),
]

AnySpec = FamilySpec | ModelSpec


# --- The two other seed papers' models as families -------------------------------------
# CsiNet and DetNet are fixed architectures with a few knobs; each expands into its layer
# list (estimator.families), which is what the engine, the builders and the database see.

SeedFamilyName = Literal["csinet", "detnet"]
SEED_FAMILIES: tuple[SeedFamilyName, ...] = ("csinet", "detnet")
CsiNetGamma = Literal["1/4", "1/16", "1/32", "1/64"]


class FamilyModelSpec(ModelSpec):
    """The layer list a seed family expands to, remembering the family (`seed_family`) so
    a refusal can name what the caller wrote. The family is not part of the spec's JSON:
    the same layers posted as a list are the same spec and the same stored record."""

    _seed_family: str = PrivateAttr(default="")

    @property
    def seed_family(self) -> str:
        return self._seed_family


class _SeedFamily(_Training):
    family: SeedFamilyName

    def _layers(self) -> ModelSpec:
        raise NotImplementedError

    def expand(self) -> FamilyModelSpec:
        """The family's layer list as a validated spec (training fields carried over)."""
        data = self._layers().model_dump() | {"precision": self.precision}
        model = FamilyModelSpec.model_validate(data)
        model._seed_family = self.family
        return model


class CsiNetSpec(_SeedFamily):
    """CsiNet for massive-MIMO CSI feedback: a 2x32x32 channel compressed to M = 2048 x
    gamma codewords and rebuilt by two RefineNet blocks; MSE loss."""

    family: Literal["csinet"]
    gamma: CsiNetGamma = Field(description="Compression ratio: M = 2048 x gamma codewords.")
    batch: PositiveInt = Field(default=200, description="Training batch size.")

    def _layers(self) -> ModelSpec:
        return csinet(self.gamma, batch=self.batch, optimizer=self.optimizer)


class DetNetSpec(_SeedFamily):
    """DetNet, a MIMO detector unfolded into `layers` iterations for K = `nt` transmitters
    and N = `nr` receivers (BPSK), hidden sizes z = 8K and v = 2K; the paper's loss."""

    family: Literal["detnet"]
    nt: int = Field(default=20, ge=1, le=1024, description="Transmitters K.")
    nr: int = Field(
        default=30, ge=1, le=MAX_DIMENSION, description="Receivers N (preprocessing only)."
    )
    layers: int = Field(default=90, ge=1, le=MAX_LAYERS, description="Unfolded layers L.")
    batch: PositiveInt = Field(default=5000, description="Training batch size.")

    def _layers(self) -> ModelSpec:
        return detnet(self.nt, self.nr, self.layers, batch=self.batch, optimizer=self.optimizer)


SeedFamilySpec = Annotated[CsiNetSpec | DetNetSpec, Field(discriminator="family")]


def write_schema() -> None:
    """Regenerate `spec.schema.json`, the schema the gate's records are checked against
    (`python -m estimator.spec`)."""
    schema = TypeAdapter(Spec).json_schema()
    SCHEMA_PATH.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_schema()
