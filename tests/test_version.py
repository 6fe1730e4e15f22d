"""The engine version follows the engine's results: numbers move it, prose does not."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from estimator import engine, framework, paper, spec, version

ROOT = Path(__file__).resolve().parents[1]
PROBE = "from estimator.engine import ENGINE_VERSION; print(ENGINE_VERSION)"


def version_in_subprocess(root: Path, seed: str = "0") -> str:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_version_is_the_format_and_a_hash_of_the_results() -> None:
    assert re.fullmatch(rf"{version.FORMAT}\+[0-9a-f]{{12}}", engine.ENGINE_VERSION)
    assert f"{version.FORMAT}+{version.fingerprint()}" == engine.ENGINE_VERSION
    assert engine.estimate(version.version_specs()[0]).to_dict()["engine_version"] == (
        engine.ENGINE_VERSION
    )


def test_the_version_is_the_same_in_every_process() -> None:
    assert version_in_subprocess(ROOT, seed="1") == version_in_subprocess(ROOT, seed="2")
    assert version_in_subprocess(ROOT) == engine.ENGINE_VERSION


def test_a_changed_number_in_either_mode_changes_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = version.fingerprint()
    monkeypatch.setattr(paper, "RESIDENT_BUFFER_BYTES", paper.RESIDENT_BUFFER_BYTES + 1)
    paper_changed = version.fingerprint()
    monkeypatch.undo()
    monkeypatch.setattr(framework, "RESIDENT_BYTES", framework.RESIDENT_BYTES + 1)
    framework_changed = version.fingerprint()
    assert len({before, paper_changed, framework_changed}) == 3


def test_editing_prose_leaves_the_version_alone(tmp_path: Path) -> None:
    """A copy of the engine with a docstring and a comment edited has the same version."""
    shutil.copytree(ROOT / "estimator", tmp_path / "estimator")
    edited = tmp_path / "estimator" / "paper.py"
    text = edited.read_text()
    edited.write_text(text.replace('"""The paper', '"""Edited: the paper', 1) + "# edited\n")
    assert edited.read_text() != text
    assert version_in_subprocess(tmp_path) == engine.ENGINE_VERSION


def _values(annotation: object) -> set[str]:
    return set(typing.get_args(annotation))


def test_the_fixed_specs_cover_every_family_layer_and_training_option() -> None:
    specs = version.version_specs()
    assert {s.family for s in specs if hasattr(s, "family")} == _values(spec.FamilyName)
    models = [engine.model_for(s, mode) for s in specs for mode in engine.MODES]
    layers = [layer for model in models for layer in model.layers]
    layer_classes = typing.get_args(typing.get_args(spec.LayerSpec)[0])
    assert {layer.type for layer in layers} == {
        cls.model_fields["type"].default for cls in layer_classes
    }
    activations = {layer.activation for layer in layers if layer.type in ("dense", "activation")}
    assert activations == _values(spec.ActivationName)
    assert {m.input_kind for m in models} == _values(spec.InputKind)
    assert {m.loss for m in models} == _values(spec.LossName)
    assert {s.precision for s in specs} == _values(spec.Precision)
    assert {s.optimizer for s in specs} == _values(spec.OptimizerName)
