"""The gate's pydantic-free path (`estimator.records`, `app.specio.read_flat_yaml`) agrees
with the pydantic spec and PyYAML: whatever the fast path accepts, the slow one reads the
same, and specs the fast path accepts estimate to the same bytes."""

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from app.specio import read_flat_yaml
from estimator.engine import MODES, estimate
from estimator.records import SCHEMA_PATH, Record, accept, canonical_json
from estimator.spec import FamilySpec, Spec

SPEC = TypeAdapter(Spec)


def test_schema_file_is_the_pydantic_specs_schema():
    """`python -m estimator.spec` regenerates it after a change to estimator/spec.py."""
    assert json.loads(SCHEMA_PATH.read_text()) == SPEC.json_schema()


# Values that are valid, out of bounds, of the wrong type, or need pydantic's coercion.
ODD_VALUES = st.sampled_from(
    [0, 1, 2, 3, 4, 6, -1, 2.0, 2.5, "4", " 4", True, False, None, "x", [], {}, 10**40, 1e309]
)
WORDS = st.sampled_from(
    ["ae", "ae-embedding", "bae", "tanh-bae", "adam", "sgd", "none", "momentum", "fp32",
     "mixed", "relu", "tanh", "linear", "softmax", "sigmoid", "encoder", "decoder", "Ae"]
)  # fmt: skip
FAMILY_KEYS = ["nr", "n", "ht", "hr", "batch", "precision",
               "optimizer", "embedding_size", "decoder_blocks", "bogus"]  # fmt: skip
LAYER_KEYS = ["units", "activation", "use_bias", "nr", "uses", "stddev",
              "input_dim", "output_dim", "name", "part"]  # fmt: skip
LAYER_TYPES = ["dense", "embedding", "batch_norm", "layer_norm", "power_norm", "activation",
               "gaussian_noise", "complex_channel", "conv"]  # fmt: skip
VALUES = st.one_of(ODD_VALUES, WORDS)

families = st.fixed_dictionaries(
    {
        "family": WORDS,
        "k": st.one_of(st.integers(1, 9), VALUES),
        "nt": st.one_of(st.integers(1, 5), VALUES),
    },
    optional={key: VALUES for key in FAMILY_KEYS},
)
MOSTLY_VALID = st.one_of(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), VALUES)
dense = st.fixed_dictionaries(
    {"type": st.just("dense"), "units": MOSTLY_VALID},
    optional={"activation": WORDS, "use_bias": st.booleans(), "part": WORDS},
)
norm = st.fixed_dictionaries(
    {"type": st.sampled_from(["batch_norm", "layer_norm", "power_norm", "gaussian_noise"])},
    optional={"name": st.sampled_from(["a", "b"])},
)
layers = st.one_of(
    dense,
    norm,
    dense,
    norm,
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(LAYER_TYPES), VALUES)},
        optional={key: MOSTLY_VALID for key in LAYER_KEYS},
    ),
)
models = st.fixed_dictionaries(
    {
        "input_kind": st.sampled_from(["real", "real", "real", "bits", "one_hot", "index", "x"]),
        "input_size": MOSTLY_VALID,
        "layers": st.lists(layers, max_size=3),
    },
    optional={
        "loss": st.sampled_from(["mse", "binary_crossentropy", "hinge"]),
        "batch": MOSTLY_VALID,
    },
)


def pydantic_json(data):
    try:
        return canonical_json(SPEC.validate_python(data))
    except ValidationError:
        return None


@settings(max_examples=600, deadline=None)
@given(st.one_of(families, models))
def test_what_the_fast_path_accepts_pydantic_reads_the_same(data):
    fast = accept(data)
    if fast is not None:
        assert isinstance(fast, Record)
        assert canonical_json(fast) == pydantic_json(data)


CLEAN_FAMILIES = st.fixed_dictionaries(
    {
        "family": st.sampled_from(["ae", "ae-embedding", "bae", "tanh-bae"]),
        "k": st.integers(1, 8),
        "nt": st.integers(1, 8),
    },
    optional={
        "nr": st.integers(1, 8),
        "n": st.integers(1, 3),
        "ht": st.integers(1, 512),
        "hr": st.integers(1, 4096),
        "batch": st.integers(1, 10**6),
        "precision": st.sampled_from(["fp32", "mixed"]),
        "optimizer": st.sampled_from(["none", "sgd", "momentum", "adam"]),
        "embedding_size": st.integers(1, 8),
        "decoder_blocks": st.integers(1, 6),
    },
)


@settings(max_examples=150, deadline=None)
@given(CLEAN_FAMILIES)
def test_clean_family_specs_take_the_fast_path_and_estimate_the_same(data):
    fast = accept(data)
    assert fast is not None  # otherwise the gate would import pydantic for a clean file
    slow = FamilySpec.model_validate(data)
    assert canonical_json(fast) == canonical_json(slow)
    for mode in MODES:
        assert estimate(fast, mode) == estimate(slow, mode)


def test_a_clean_generic_model_takes_the_fast_path():
    data = {
        "input_kind": "real",
        "input_size": 8,
        "layers": [
            {"type": "dense", "units": 16, "activation": "relu"},
            {"type": "gaussian_noise", "stddev": 1},
            {"type": "dense", "units": 4},
        ],
    }
    fast = accept(data)
    assert fast is not None and fast.layers[1].stddev == 1.0
    assert canonical_json(fast) == pydantic_json(data)
    assert estimate(fast, "framework") == estimate(SPEC.validate_python(data), "framework")


@pytest.mark.parametrize(
    "data",
    [
        {"family": "ae", "k": 64, "nt": 256},  # message space bound (a model validator)
        {"input_kind": "real", "input_size": 3, "layers": [{"type": "complex_channel", "nr": 2}]},
        {"family": "bae", "k": "6", "nt": 4},  # pydantic coerces; the fast path leaves it
        {"family": "bae", "k": 6, "nt": 4, "extra": 1},
    ],
)
def test_invalid_or_coercible_input_is_left_to_pydantic(data):
    assert accept(data) is None


def test_records_support_what_the_engine_calls():
    fast = accept({"family": "bae", "k": 2, "nt": 2, "batch": 8})
    assert fast is not None
    copy = fast.model_copy(update={"batch": 16})
    assert (fast.batch, copy.batch, copy.k) == (8, 16, 2)
    with pytest.raises(AttributeError):
        fast.k = 3
    with pytest.raises(AttributeError):
        _ = fast.no_such_field


YAML_TOKENS = st.sampled_from(
    ["family", "k", "nt", "on", "yes", "Null", "bae", "tanh-bae", "0", "6", "-3", "06", "1_0",
     "0x1f", "1.5", "~", "'x'", "x y", "12:30", "#", "y", "True", "no", "a1", "_b"]
)  # fmt: skip
YAML_LINES = st.one_of(
    st.tuples(YAML_TOKENS, YAML_TOKENS).map(lambda kv: f"{kv[0]}: {kv[1]}"),
    st.sampled_from(["", "# comment", "  k: 3", "---", "k:3", "k: 3  ", "k: 3 # c", "- 1"]),
)


@settings(max_examples=800, deadline=None)
@given(st.lists(YAML_LINES, max_size=6))
def test_flat_yaml_reads_what_pyyaml_reads(lines):
    text = "\n".join(lines)
    fast = read_flat_yaml(text)
    if fast is not None:
        assert fast == yaml.safe_load(text)


def test_flat_yaml_reads_a_family_spec():
    assert read_flat_yaml("# ours\nfamily: tanh-bae\nk: 6\nnt: 4\n") == {
        "family": "tanh-bae",
        "k": 6,
        "nt": 4,
    }
