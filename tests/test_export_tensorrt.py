"""TensorRT: what can be checked without CUDA (profile from the spec, one-line errors); parity with CUDA."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import syncopt
from syncopt.core.errors import BackendUnavailable, ClipTooShortError
from syncopt.export import export
from syncopt.export.tensorrt import optimization_profile

try:
    import tensorrt  # noqa: F401

    HAVE_TRT = torch.cuda.is_available()
except ImportError:
    HAVE_TRT = False


def test_profile_spans_min_standard_and_max_frames():
    spec = syncopt.create("fcn", "tiny").spec
    profile = optimization_profile(spec, max_frames=3000, max_batch=4)
    assert profile["video"] == ((1, 3, 5, 48, 48), (1, 3, 25, 48, 48), (4, 3, 3000, 48, 48))
    assert profile["audio"] == ((1, 1, 13, 20), (1, 1, 13, 100), (4, 1, 13, 12000))
    with pytest.raises(ClipTooShortError):
        optimization_profile(spec, max_frames=2)


@pytest.mark.skipif(HAVE_TRT, reason="checks the message on a machine without TensorRT/CUDA")
def test_export_without_tensorrt_names_extra_and_device(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"TensorRT export \(CUDA only\) needs the 'tensorrt' package: "
                                                 r"pip install 'syncopt\[tensorrt\]'|needs a CUDA device"):
        export(syncopt.create("fcn", "tiny"), "tensorrt", tmp_path, "fp16")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_no_cuda_is_reported_even_with_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", type(sys)("tensorrt"))  # a stand-in module
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="TensorRT export needs a CUDA device; none is visible"):
        export(syncopt.create("fcn", "tiny"), "tensorrt", tmp_path)


@pytest.mark.skipif(HAVE_TRT, reason="checks the CLI message on a machine without TensorRT/CUDA")
def test_cli_exits_10_when_only_tensorrt_was_asked(tmp_path):
    res = subprocess.run([sys.executable, "-m", "syncopt", "export", "fcn", "--format", "tensorrt", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 10
    assert res.stderr.startswith("skipped tensorrt: TensorRT export (CUDA only) needs") and res.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT needs CUDA and the tensorrt package")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_parity_on_cuda(precision, tmp_path):
    from syncopt.parity import check_parity

    art = export(syncopt.create("fcn", "tiny"), "tensorrt", tmp_path, precision)
    report = check_parity(art.path, frames=(0, 41), synth_clips=8)
    assert report.passed, report.failures
