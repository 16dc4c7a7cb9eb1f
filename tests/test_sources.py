"""sources.resolve: one answer to "what can I pass here" for every command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import syncopt
from syncopt.core.errors import InputFileError, UsageError
from syncopt.export import export
from syncopt.models.sources import DEFAULT_MODEL, resolve, shipped_weights


def test_a_name_is_a_fresh_build_unless_shipped_weights_are_asked_for():
    bare = resolve("fcn", "tiny")
    assert (bare.name, bare.preset, bare.weights, bare.artifact) == ("fcn", "tiny", None, None)
    shipped = resolve("fcn", "tiny", shipped=True)
    assert shipped.weights == shipped_weights("fcn", "tiny") and shipped.synthetic
    default = resolve(None, shipped=True)
    assert (default.name, default.preset) == DEFAULT_MODEL and not default.synthetic


def test_name_equals_weights_and_a_run_directory(tmp_path: Path):
    weights = tmp_path / "w.safetensors"
    shutil.copy(shipped_weights("fcn", "tiny"), weights)
    named = resolve(f"fcn={weights}", "tiny")
    assert (named.name, named.weights) == ("fcn", weights)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(weights, run / "model.safetensors")
    (run / "config.json").write_text(json.dumps({"model": "fcn", "preset": "tiny"}))
    for source in (resolve(run), resolve("fcn", "full", weights=run)):  # the run's own model and preset win
        assert (source.name, source.preset, source.weights) == ("fcn", "tiny", run / "model.safetensors")
    assert source.build().spec.preset == "tiny"


def test_an_artifact_names_its_source_model(tmp_path: Path):
    art = export(syncopt.create("fcn", "tiny"), "onnx", tmp_path, "fp32")
    source = resolve(art.path)
    assert (source.name, source.preset, source.artifact.format, source.label) == ("fcn", "tiny", "onnx", art.path.name)
    assert source.weights == art.weights_path and source.weights.is_file()


@pytest.mark.parametrize("ref, error, message", [
    ("fcnn", UsageError, "unknown model 'fcnn' .*did you mean"),
    ("missing.onnx", InputFileError, "no artifact manifest"),
])
def test_bad_references_are_one_line_errors(ref, error, message, tmp_path: Path):
    with pytest.raises(error, match=message):
        resolve(ref)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="directory without config.json"):
        resolve(empty)
    with pytest.raises(UsageError, match="no weights for fcn_attn"):
        resolve("fcn_attn", "full", shipped=True)
