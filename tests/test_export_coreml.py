"""CoreML ML Program packages: atomic, hashed, structurally valid on Linux; numeric parity on macOS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("coremltools", reason="the coreml extra is not installed")

import syncopt  # noqa: E402
from syncopt.core.artifact import load_artifact, sha256_path  # noqa: E402
from syncopt.core.errors import WeightsError  # noqa: E402
from syncopt.core.errors import BackendUnavailable  # noqa: E402
from syncopt.export import export  # noqa: E402
from syncopt.export.coreml import validate_package  # noqa: E402
from syncopt.parity import check_parity  # noqa: E402
from syncopt.runtimes import load  # noqa: E402

MACOS = os.uname().sysname == "Darwin"


def _model(name: str) -> pytest.param:
    missing = name not in syncopt.model_names()
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"model '{name}' is not registered yet"))


MODELS = ["fcn", "fcn_attn", _model("x3d_s"), _model("mobile_2d")]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("coreml")


@pytest.fixture(scope="module")
def fcn_fp16(out):
    return export(syncopt.create("fcn", "tiny"), "coreml", out, "fp16")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_package_validates_structurally(name, out):
    art = load_artifact(export(syncopt.create(name, "tiny"), "coreml", out / name, "fp32").path)
    assert art.path.is_dir() and art.path.suffix == ".mlpackage"
    assert validate_package(art) == []
    assert not list(art.folder.glob(".*.tmp*"))  # the temporary directory was renamed away


def test_fp16_and_int8_precision_is_checked(fcn_fp16, out):
    assert validate_package(load_artifact(fcn_fp16.path)) == []
    int8 = export(syncopt.create("fcn", "tiny"), "coreml", out, "int8")
    assert "constexpr_affine_dequantize" in int8.ops and validate_package(load_artifact(int8.path)) == []
    wrong = load_artifact(fcn_fp16.path).model_copy(update={"precision": "fp32"})
    assert any(p.startswith("precision: float16 compute True") for p in validate_package(wrong))


def test_package_hash_covers_every_file(fcn_fp16):
    art = load_artifact(fcn_fp16.path)
    assert art.sha256 == sha256_path(art.path)
    weights = next(p for p in art.path.rglob("*.bin"))
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(WeightsError, match="does not match its manifest"):
            load_artifact(fcn_fp16.path)
    finally:
        weights.write_bytes(original)


def test_cli_parity_reports_structure_off_macos(fcn_fp16):
    res = subprocess.run([sys.executable, "-m", "syncopt", "parity", str(fcn_fp16.path), "--json"],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)[0]
    assert report["passed"] and (MACOS or report["note"].startswith("structure only"))


@pytest.mark.skipif(not MACOS, reason="CoreML prediction needs macOS; Linux validates the structure only")
def test_numeric_parity_on_macos(fcn_fp16):
    assert check_parity(fcn_fp16.path, synth_clips=4).passed


@pytest.mark.skipif(MACOS, reason="checks the Linux message")
def test_runtime_off_macos_says_why(fcn_fp16):
    with pytest.raises(BackendUnavailable, match="CoreML prediction needs macOS"):
        load(fcn_fp16.path)


def test_missing_backend_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "coremltools", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'syncopt\[coreml\]'"):
        export(syncopt.create("fcn", "tiny"), "coreml", tmp_path)
