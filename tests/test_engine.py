"""Spec validation, family expansion, the sweep fast path and the inverse searches."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from estimator.engine import MODES, estimate
from estimator.families import expand, message_size
from estimator.layers import resolve
from estimator.search import max_batch, max_k, max_nt
from estimator.spec import FamilySpec, ModelSpec, Spec, spec_hash
from estimator.sweep import Grid, sweep
from estimator.units import format_gib, parse_size

SPEC = TypeAdapter(Spec)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"family": "ae", "k": 0, "nt": 2}, "k"),
        ({"family": "ae", "k": 2, "nt": 0}, "nt"),
        ({"family": "ae", "k": 2, "nt": 2, "batch": 0}, "batch"),
        ({"family": "ae", "k": 2, "nt": 2, "precision": "fp8"}, "precision"),
        ({"input_kind": "real", "input_size": 4, "layers": [{"type": "conv"}]}, "layers"),
    ],
)
def test_impossible_values_name_the_field(data, field):
    with pytest.raises(ValidationError) as error:
        SPEC.validate_python(data)
    assert any(field in map(str, e["loc"]) for e in error.value.errors())


def test_mismatched_layer_input_names_the_layer():
    with pytest.raises(ValidationError, match=r"layers\[1\]"):
        ModelSpec(
            input_kind="real",
            input_size=6,
            layers=[{"type": "dense", "units": 5}, {"type": "complex_channel", "nr": 2}],
        )


def test_family_defaults_follow_the_paper():
    spec = FamilySpec(family="ae", k=2, nt=4)
    assert (spec.receive_antennas, spec.n, spec.ht, spec.hr, spec.batch) == (4, 1, 256, 2048, 2048)
    assert spec.optimizer == "adam" and spec.embedding_size == 2


@pytest.mark.parametrize("family", ["ae", "ae-embedding", "bae", "tanh-bae"])
def test_families_expand_to_table1(family):
    spec = FamilySpec(family=family, k=2, nt=2, ht=16, hr=32)
    model = expand(spec)
    types = [layer.type for layer in model.layers]
    assert types.count("batch_norm") == 3  # Table 1's decoder
    assert ("power_norm" in types) == (family != "tanh-bae")
    assert types[-1] == "dense" and model.layers[-1].units == message_size(spec)
    assert resolve(model)[-1].out_features == message_size(spec)


def test_spec_hash_ignores_how_defaults_were_given():
    assert spec_hash(FamilySpec(family="bae", k=2, nt=2)) == spec_hash(
        FamilySpec(family="bae", k=2, nt=2, nr=None, batch=2048, optimizer="adam")
    )


@pytest.mark.parametrize("mode", MODES)
def test_sweep_equals_one_estimate_per_config(mode):
    grid = Grid(
        family=["ae", "ae-embedding", "bae", "tanh-bae"],
        k=[2, 5],
        nt=[1, 3],
        batch=[1, 64, 2048],
        precision=["fp32", "mixed"],
        mode=mode,
    )
    rows = list(sweep(grid))
    assert len(rows) == grid.size
    for row in rows:
        spec = FamilySpec(
            family=row.family, k=row.k, nt=row.nt, batch=row.batch, precision=row.precision
        )
        assert row.total_bytes == estimate(spec, mode).total_bytes


@settings(max_examples=60, deadline=None)
@given(
    family=st.sampled_from(["ae", "bae", "tanh-bae", "ae-embedding"]),
    k=st.integers(1, 8),
    nt=st.integers(1, 6),
    vram=st.integers(2**29, 2**45),
)
def test_max_batch_is_the_largest_that_fits(family, k, nt, vram):
    spec = FamilySpec(family=family, k=k, nt=nt, batch=1)
    best = max_batch(spec, vram, "paper")

    def total(batch):
        return estimate(spec.model_copy(update={"batch": batch}), "paper").total_bytes

    if best == 0:
        assert total(1) > vram
    else:
        assert total(best) <= vram < total(best + 1)


def test_max_nt_and_max_k_are_tight():
    vram = 40 * 2**30
    spec = FamilySpec(family="bae", k=4, nt=1)
    nt = max_nt(spec, vram, "paper")
    assert estimate(spec.model_copy(update={"nt": nt}), "paper").total_bytes <= vram
    assert estimate(spec.model_copy(update={"nt": nt + 1}), "paper").total_bytes > vram
    k = max_k(FamilySpec(family="ae", k=1, nt=2), vram, "paper")
    assert estimate(FamilySpec(family="ae", k=k, nt=2), "paper").total_bytes <= vram
    assert estimate(FamilySpec(family="ae", k=k + 1, nt=2), "paper").total_bytes > vram


@pytest.mark.parametrize(
    ("text", "size"),
    [("80GiB", 80 * 2**30), ("40 GB", 40 * 10**9), ("1.5TiB", 3 * 2**39), ("1024", 1024)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "0", "5 parsecs"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_gib():
    assert format_gib(859_923_299_269) == "800.9"
    assert format_gib(2**30 * 12802) == "1.280e+4"
    assert format_gib(0) == "0"
