"""What a spec is, in plain Python: its vocabularies, its bounds and the checks that need no
pydantic.

The bottom of the estimator: it imports nothing from the package. The pydantic spec
(`estimator.spec`), the pydantic-free records (`estimator.records`), the shape inference
(`estimator.layers`) and the families (`estimator.families`) all build on it, so each of
them imports the others at the top of the module, in one direction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from estimator.spec import FamilySpec

Precision = Literal["fp32", "mixed"]
OptimizerName = Literal["none", "sgd", "momentum", "adam"]
FamilyName = Literal["ae", "ae-embedding", "bae", "tanh-bae"]
ActivationName = Literal["linear", "relu", "sigmoid", "tanh", "softmax"]
LossName = Literal[
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
    "mse",
    "detnet",  # Eq. (4) of the green-DetNet paper: log(k)-weighted, ZF-normalised errors
]
Padding = Literal["same", "valid"]
InputKind = Literal["one_hot", "bits", "index", "real"]
Part = Literal["encoder", "channel", "decoder"]
SpecKind = Literal["family", "model"]

# Bounds that keep one estimate well under a second (the framework mode walks every
# layer pair) and every stored dimension within a 32-bit database column.
MAX_DECODER_BLOCKS = 256
MAX_LAYERS = 1024
MAX_DIMENSION = 2**31 - 1
# 2^(k*nt) one-hot messages beyond 2^8192 would print as integers of more than 2,500 digits:
# still exact, but no longer a question anyone asks of a GPU.
MAX_MESSAGE_BITS = 8192
ONE_HOT_FAMILIES = ("ae", "ae-embedding")  # one input/output value per joint message


def spec_kind(value: Any) -> SpecKind:
    """'family' for a family spec (a mapping with a `family` key, or an object with that
    attribute), 'model' for a generic layer list."""
    if isinstance(value, dict):
        return "family" if "family" in value else "model"
    return "family" if hasattr(value, "family") else "model"


def check_message_space(family: str, k: int, nt: int) -> None:
    """Raise ValueError when a one-hot family's message space is beyond what we estimate."""
    if family in ONE_HOT_FAMILIES and k * nt > MAX_MESSAGE_BITS:
        raise ValueError(
            f"k*nt = {k * nt} bits: message spaces beyond 2^{MAX_MESSAGE_BITS} are not supported"
        )


def receive_antennas(spec: FamilySpec) -> int:
    """N_R, which defaults to N_T."""
    return spec.nt if spec.nr is None else spec.nr
