"""The engine's version, defined by what it computes.

Stored estimates are keyed by the engine version that computed them, so the version must
change exactly when an estimate could change. It is a hash of the engine's full results
(every layer row, every category, every total) for a fixed set of specs in both modes:
editing a docstring or reorganising code leaves it alone, and any change to a number moves
it. The specs cover every family, every layer type, both precisions and every optimizer;
`tests/test_version.py` checks that coverage and that a changed number changes the version.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any

from estimator.records import accept

if TYPE_CHECKING:
    from estimator.spec import FamilySpec, ModelSpec

# Bumped by hand when the stored result's format changes in a way the numbers do not show.
FORMAT = 2

_FAMILIES: tuple[dict[str, Any], ...] = (
    {"family": "ae", "k": 2, "nt": 2, "batch": 64},
    {"family": "ae", "k": 3, "nt": 2, "batch": 32, "precision": "mixed", "optimizer": "sgd"},
    {"family": "ae-embedding", "k": 2, "nt": 3, "batch": 16, "precision": "mixed"},
    {"family": "bae", "k": 4, "nt": 4, "batch": 128, "optimizer": "momentum"},
    {"family": "bae", "k": 2, "nt": 2, "nr": 3, "n": 2, "ht": 32, "hr": 64, "decoder_blocks": 2},
    {"family": "tanh-bae", "k": 6, "nt": 2, "batch": 256, "optimizer": "none"},
)
_MODELS: tuple[dict[str, Any], ...] = (
    {
        "input_kind": "index",
        "input_size": 1,
        "batch": 8,
        "loss": "sparse_categorical_crossentropy",
        "layers": [
            {"type": "embedding", "input_dim": 16, "output_dim": 4},
            {"type": "dense", "units": 4, "activation": "tanh", "use_bias": False},
            {"type": "power_norm"},
            {"type": "complex_channel", "nr": 3},
            {"type": "gaussian_noise", "stddev": 0.2},
            {"type": "layer_norm"},
            {"type": "dense", "units": 16, "activation": "softmax"},
        ],
    },
    {
        "input_kind": "real",
        "input_size": 12,
        "batch": 24,
        "precision": "mixed",
        "optimizer": "momentum",
        "layers": [
            {"type": "dense", "units": 10, "activation": "relu"},
            {"type": "batch_norm"},
            {"type": "activation", "activation": "sigmoid"},
            {"type": "dense", "units": 3},
        ],
    },
    {
        "input_kind": "bits",
        "input_size": 6,
        "batch": 4,
        "optimizer": "sgd",
        "loss": "binary_crossentropy",
        "layers": [{"type": "dense", "units": 6, "activation": "sigmoid"}],
    },
    # CsiNet's layer types (estimator/conv_steps.py)
    {
        "input_kind": "real",
        "input_size": 32,
        "batch": 8,
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
            {"type": "leaky_relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 5},
        ],
    },
)
# DetNet's training graph (estimator/detnet_steps.py): detnet layers, the detnet loss.
_DETNET: dict[str, Any] = {
    "input_kind": "real",
    "input_size": 12,
    "batch": 16,
    "loss": "detnet",
    "layers": [
        {"type": "detnet_layer", "transmitters": 2, "hidden": 16, "v": 4},
        {"type": "detnet_layer", "transmitters": 2, "hidden": 16, "v": 4},
    ],
}
VERSION_SPECS: tuple[dict[str, Any], ...] = (*_FAMILIES, *_MODELS, _DETNET)


def version_specs() -> list[FamilySpec | ModelSpec]:
    """The fixed specs, as the engine reads them."""
    specs = []
    for data in VERSION_SPECS:
        spec = accept(data)
        if spec is None:
            raise ValueError(f"not a valid spec: {data}")
        specs.append(spec)
    return specs


def fingerprint() -> str:
    """Hash of every result of the engine on the fixed specs, in both modes."""
    from estimator.budget import bounded
    from estimator.engine import MODES, estimate

    with bounded(None):  # the version is the engine's, never charged to a request
        return _fingerprint(MODES, estimate)


def _fingerprint(modes: Any, estimate: Any) -> str:
    digest = hashlib.sha256(f"format {FORMAT}\0".encode())
    for spec in version_specs():
        for mode in modes:
            result = estimate(spec, mode).to_dict()
            del result["engine_version"]  # "" while the version is computed, else the version
            digest.update(json.dumps(result, sort_keys=True).encode() + b"\0")
    return digest.hexdigest()[:12]


_lock = threading.Lock()
_state = threading.local()  # `hashing` is True in the thread computing the version
_version: str | None = None


def engine_version() -> str:
    """`<FORMAT>+<fingerprint>`, computed once per process, on first use.

    The results it hashes carry the version themselves (`Estimate.to_dict`); while they are
    computed, in the thread computing them, it reads "" and is left out of the hash.
    """
    global _version
    if _version is not None:
        return _version
    if getattr(_state, "hashing", False):
        return ""
    with _lock:
        if _version is None:
            _state.hashing = True
            try:
                _version = f"{FORMAT}+{fingerprint()}"
            finally:
                _state.hashing = False
        return _version
