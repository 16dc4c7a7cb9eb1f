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


def test_random_models_start_the_same_on_every_run(monkeypatch, tmp_path):
    """A model without shipped weights starts from the same random weights on every run, so a
    re-run gives the same parity figures (bf16 cells sat at 0.0037 on one run, 0.0103 on the next)."""
    import torch

    seen = []

    def cell(net, name, preset, fmt, precision, folder, synth_clips):
        seen.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
        return matrix.Cell(model=name, preset=preset, format=fmt, precision=precision, status="passed")

    monkeypatch.setattr(matrix, "_cell", cell)
    for run in range(2):
        torch.manual_seed(run + 1)  # whatever the caller's generator holds
        matrix.run_matrix(tmp_path / "m.md", models=["x3d_s"], presets=["tiny"], formats=["onnx"])  # none shipped
    first, second = seen[:len(seen) // 2], seen[len(seen) // 2:]
    assert first and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_long_errors_keep_their_end():
    """OpenVINO puts the reason at the end of a long message: the cell note keeps both ends."""
    reason = "ParameterMismatch: Can not clone with new dims."
    note = matrix._line(RuntimeError("Exception from src/inference/src/dev/plugin.cpp:54: " + "x" * 500 + reason))
    assert note.startswith("Exception from") and note.endswith(reason) and len(note) <= 240
