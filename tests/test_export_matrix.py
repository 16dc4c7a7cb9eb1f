"""The conversion matrix: cells kept as JSON beside the Markdown, rows re-run with update=True."""

from __future__ import annotations

import pytest

import syncopt.export.matrix as matrix


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
