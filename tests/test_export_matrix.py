"""The conversion matrix: cells kept as JSON beside the Markdown, cells re-run with update=True."""

from __future__ import annotations

import pytest

import syncopt.deploy.matrix as matrix


@pytest.fixture
def fake_cells(monkeypatch):
    """Cells without exporting: the status says which run made them."""
    run = {"status": "passed"}

    def cell(net, name, preset, fmt, precision, folder, synth_clips):
        return matrix.Cell(model=name, preset=preset, format=fmt, precision=precision, status=run["status"],
                           detail=f"{run['status']} run")

    monkeypatch.setattr(matrix, "_cell", cell)
    return run


def test_update_reruns_only_the_named_rows(fake_cells, tmp_path):
    out = tmp_path / "m.md"
    first = matrix.run_matrix(out, models=["fcn", "x3d_s"], presets=["tiny"], formats=["onnx"])
    assert [c.model for c in matrix.load_cells(matrix.cells_path(out))] == ["fcn", "fcn", "x3d_s", "x3d_s"]
    fake_cells["status"] = "failed"
    cells = matrix.run_matrix(out, models=["fcn"], presets=["tiny"], formats=["onnx"], update=True)
    assert [(c.model, c.status) for c in cells] == [("fcn", "failed")] * 2 + [("x3d_s", "passed")] * 2
    assert cells[2:] == first[2:]
    text = out.read_text()
    assert "| fcn | ❌ [1] | ❌ [1] |" in text and "| x3d_s | ✅ [2] | ✅ [2] |" in text
    matrix.run_matrix(out, models=["fcn"], presets=["tiny"], formats=["onnx"])  # without update: fcn only
    assert {c.model for c in matrix.load_cells(matrix.cells_path(out))} == {"fcn"}


def test_update_keeps_the_formats_it_does_not_rerun(fake_cells, tmp_path):
    out = tmp_path / "m.md"
    matrix.run_matrix(out, models=["x3d_s"], presets=["full"], formats=["onnx", "coreml"])
    fake_cells["status"] = "failed"
    cells = matrix.run_matrix(out, models=["x3d_s"], presets=["full"], formats=["onnx"], update=True)
    assert {(c.format, c.status) for c in cells} == {("onnx", "failed"), ("coreml", "passed")}
    assert len(cells) == 5  # onnx fp32/fp16, coreml fp32/fp16/int8
    matrix.run_matrix(out, models=["fcn"], presets=["tiny"], formats=["coreml"], update=True)
    assert "| fcn |  |  | ❌ [1] |" in out.read_text()  # its onnx cells, not run, render blank
