"""syncopt bench: every requested cell present with positive figures, skips with reasons, outputs, pipeline."""

from __future__ import annotations

import csv
import io
import itertools
import json
import platform
from pathlib import Path

import pytest
import torch

from syncopt.core.timing import interleaved_times, percentiles
from syncopt.deploy.bench import bench, to_csv
from syncopt.deploy.bench_pipeline import bench_pipeline
from syncopt.cli import main
from syncopt.core.errors import UsageError

FIXTURE = Path(__file__).parent / "fixtures" / "example.avi"
FAST = dict(warmup=1, repeats=3, max_seconds=0.5)


@pytest.fixture(scope="module")
def report():
    return bench(["mobile_2d"], runtimes=["torch", "onnxruntime"], batches=(1, 2), frames=(5, 9), **FAST)


def test_every_runtime_batch_frames_cell_has_positive_numbers(report):
    cells = {(c.runtime, c.batch, c.frames): c for c in report.cells}
    assert set(cells) == set(itertools.product(["torch", "onnxruntime"], [1, 2], [5, 9]))
    for c in cells.values():
        assert c.status == "ok", c.reason
        assert c.repeats >= 3
        for value in (c.latency_ms_p50, c.clips_per_s, c.video_s_per_s, c.size_mb, c.macs, c.gflops):
            assert value is not None and value > 0
        assert c.latency_ms_p50 <= c.latency_ms_p90 <= c.latency_ms_p99
        assert c.peak_mem_mb is not None and c.peak_mem_mb >= 0
        assert c.video_s_per_s == pytest.approx(c.clips_per_s * c.frames / 25.0)
    assert cells["onnxruntime", 1, 5].note == "exported to onnx on the fly"
    # MACs scale with the batch
    assert cells["torch", 2, 9].macs == 2 * cells["torch", 1, 9].macs


def test_csv_has_one_row_per_cell(report):
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(rows) == len(report.cells) == 8
    assert float(rows[0]["latency_ms_p50"]) > 0


def test_absent_hardware_is_skipped_with_a_reason():
    rep = bench(["mobile_2d"], runtimes=["coreml", "tensorrt"], batches=(1,), **FAST)
    by_runtime = {c.runtime: c for c in rep.cells}
    if platform.system() != "Darwin":
        assert by_runtime["coreml"].status == "skipped" and "macOS" in by_runtime["coreml"].reason
    if not torch.cuda.is_available():
        assert by_runtime["tensorrt"].status == "skipped" and "CUDA" in by_runtime["tensorrt"].reason


def test_artifact_in_a_foreign_runtime_fails_its_row(tmp_path):
    from syncopt.export import export
    from syncopt.models.registry import create

    art = export(create("mobile_2d", "tiny"), "onnx", tmp_path)
    rep = bench([str(art.path)], runtimes=["onnxruntime", "tflite", "torch"], frames=(6,), **FAST)
    status = {c.runtime: c.status for c in rep.cells}
    assert status == {"onnxruntime": "ok", "tflite": "failed", "torch": "ok"}
    assert rep.cells[0].size_mb == pytest.approx(art.path.stat().st_size / 1e6)


def test_percentiles():
    p50, p90, p99, mean = percentiles([0.001 * i for i in range(1, 101)])
    assert p50 == pytest.approx(50.5) and p90 == pytest.approx(90.1) and p99 == pytest.approx(99.01)
    assert mean == pytest.approx(50.5)


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="unknown runtime"):
        bench(["mobile_2d"], runtimes=["nosuch"])
    with pytest.raises(UsageError, match="unknown model"):
        bench(["no_such_model"])


def test_cli_json_and_plot(tmp_path, capsys):
    png = tmp_path / "bench.png"
    with pytest.raises(SystemExit) as exc:
        main(["bench", "mobile_2d", "--frames", "5", "--repeats", "3", "--warmup", "1", "--json", "--plot", str(png)])
    assert exc.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["status"] for c in data["cells"]] == ["ok"]
    assert data["machine"]["cores"] >= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_batch_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "mobile_2d", "--batch", "one"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize("crop, faces", [("full", []), ("detect", ["detect", "landmarks"])])
def test_pipeline_times_every_stage(crop, faces):
    video = FIXTURE if crop == "full" else FIXTURE.parent / "grid_brbk7n.mpg"
    rep = bench_pipeline(str(video), "fcn", "tiny", crop=crop, repeats=1)
    stages = [s.stage for s in rep.stages]
    assert stages == ["decode video", *faces, "crop", "decode audio", "MFCC / audio features",
                      "crops -> tensor", "model", "offset decoding"]
    assert all(s.ms_p50 > 0 for s in rep.stages)
    assert sum(s.ms_p50 for s in rep.stages) == pytest.approx(rep.total_ms)
    assert rep.frames == (317 if crop == "full" else 75) and rep.realtime_factor > 0


def test_pipeline_of_the_default_model_times_the_lip_path():
    """Without --model the pipeline is sync's: fcn_lips on face-mesh tracks (it read face crops and
    divided by fcn_lips' crop size of 0 before)."""
    rep = bench_pipeline(str(FIXTURE.parent / "grid_brbk7n.mpg"), repeats=1)
    assert (rep.model, rep.preset, rep.crop) == ("fcn_lips", "full", "landmarks")
    stages = [s.stage for s in rep.stages]
    assert stages == ["decode video", "detect", "landmarks", "decode audio", "MFCC / audio features", "lip features",
                      "model", "offset decoding"]
    assert sum(s.ms_p50 for s in rep.stages) == pytest.approx(rep.total_ms) and rep.frames == 75


@pytest.mark.slow
def test_tflite_artifact_runs_at_its_own_length(tmp_path):
    pytest.importorskip("onnx2tf")
    from syncopt.export import export
    from syncopt.models.registry import create

    art = export(create("mobile_2d", "tiny"), "tflite", tmp_path, frames=7)
    rep = bench([str(art.path)], batches=(2,), frames=(25, 50), **FAST)
    (cell,) = rep.cells  # benchmarked once, at its own length
    assert cell.status == "ok" and cell.runtime == "tflite" and cell.frames == 7
    assert "fixed at T=7 (requested 25)" in cell.note


def test_cli_failed_cell_exits_non_zero_after_the_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exc:  # 2 frames: below fcn's receptive field, so the cell fails
        main(["bench", "fcn", "--frames", "2,5", "--repeats", "3", "--warmup", "1", "--out", str(out)])
    assert exc.value.code == 16
    cells = json.loads(out.read_text())["cells"]
    assert [c["status"] for c in cells] == ["failed", "ok"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 1 of 2 cells failed; first: fcn torch B=1 T=2")


def test_interleaved_times_rotates_the_order_each_round():
    calls: list[str] = []
    seen: list[int] = []
    times = interleaved_times({k: (lambda k=k: calls.append(k)) for k in "abc"}, rounds=3, warmup=2,
                              on_round=lambda t: seen.append(len(t["a"])))
    assert calls == list("aabbcc") + list("abc") + list("bca") + list("cab")
    assert seen == [1, 2, 3] and {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(x >= 0 for v in times.values() for x in v)


def test_interleaved_times_repeat_short_calls_and_keep_their_median():
    import itertools
    import time as clock

    naps = itertools.cycle([0.001, 0.001, 0.03])  # one slow call in three: a moment's load
    counts = {"short": 0, "long": 0}

    def short() -> None:
        counts["short"] += 1
        clock.sleep(next(naps))

    def long() -> None:
        counts["long"] += 1
        clock.sleep(0.06)

    times = interleaved_times({"short": short, "long": long}, rounds=2, warmup=0, min_seconds=0.05)
    assert counts["long"] == 2 and counts["short"] >= 6  # the long call fills the time alone
    assert all(t < 0.02 for t in times["short"]) and all(t >= 0.06 for t in times["long"])
