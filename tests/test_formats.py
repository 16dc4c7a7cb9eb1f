"""The formats table: every row imports, every stage sees the same formats, every row exports and passes parity."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import syncopt
from syncopt.core.formats import FORMATS, bundle_targets, runtime_formats


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_row_imports(name):
    row = FORMATS[name]
    assert callable(row.load("exporter")) and callable(row.load("session"))
    assert row.load("session").name == row.runtime
    if row.validate:
        assert callable(row.load("validate"))
    ok, reason = row.available("export")
    assert ok == (reason == "")


def test_every_stage_sees_the_same_formats():
    from syncopt import parity, runtimes
    from syncopt.deploy import bench, bundle
    from syncopt.export import matrix
    from syncopt.deploy.gate import Contender
    from syncopt.pipeline.recipe import ExportStage

    names = set(FORMATS)
    assert set(runtimes.DEFAULT_RUNTIME) == names
    assert set(runtimes.RUNTIMES) == {f.runtime for f in FORMATS.values()} | {"torch"}
    assert set(bench.RUNTIME_FORMAT.values()) - {"torch"} == names
    assert inspect.signature(matrix.run_matrix).parameters["formats"].default == tuple(FORMATS)
    assert set(bundle.TARGET_FORMATS.values()) <= names and bundle.TARGET_FORMATS == bundle_targets()
    assert {p for f in FORMATS.values() for p in f.precisions} <= set(parity.TOLERANCES)
    assert ExportStage(formats=list(FORMATS)).formats == list(FORMATS)
    for runtime in runtime_formats():
        assert Contender(target="fcn", runtime=runtime).runtime == runtime
    with pytest.raises(ValueError, match="unknown format 'bogus'"):
        ExportStage(formats=["bogus"])
    res = subprocess.run([sys.executable, "-m", "syncopt", "export", "--help"], capture_output=True, text=True,
                         timeout=120, env={"COLUMNS": "300", "PATH": ""})
    help_text = " ".join(res.stdout.split())
    assert f"Comma-separated formats: {', '.join(FORMATS)}." in help_text


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_row_exports_a_tiny_model_and_passes_parity(name, tmp_path):
    from syncopt.core.errors import BackendUnavailable
    from syncopt.export import export
    from syncopt.parity import check_parity

    row = FORMATS[name]
    ok, reason = row.available("export")
    if not ok:
        with pytest.raises(BackendUnavailable):
            export(syncopt.create("x3d_s", "tiny"), name, tmp_path, "fp32")
        pytest.skip(reason)
    art = export(syncopt.create("x3d_s", "tiny"), name, tmp_path, "fp32", **row.export_options(25))
    assert art.format == name and art.path.name.endswith(row.suffix) and art.path.is_dir() == row.directory
    assert (art.frames is not None) == row.fixed_frames
    report = check_parity(art.path, synth_clips=2)
    assert report.passed, report.failures
    runs, why = row.available("run")
    assert bool(report.note) == (not runs)  # structure only exactly where the runtime cannot run here
    if not runs:
        assert why in report.note
