"""INT8: the quantized ONNX runs in ONNX Runtime, is smaller, and stays within DESIGN's INT8 tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from syncopt.cli import main
from syncopt.compress.quantize import QuantizeConfig, calibration_set, quantize
from syncopt.errors import UsageError
from syncopt.sync import shipped_weights


@pytest.mark.slow
def test_ort_int8_is_smaller_and_within_tolerance(tmp_path):
    config = QuantizeConfig(weights=str(shipped_weights("fcn", "tiny")), calibration_clips=16, eval_clips=40,
                            speed_runs=5, calibration="percentile")
    report = quantize("fcn", config, tmp_path)
    assert report.int8_bytes < report.fp32_bytes
    assert report.accuracy_drop <= 1.0  # points (DESIGN.md int8 row)
    assert report.offset_agreement >= 0.99
    assert report.min_embedding_cosine >= 0.99
    assert report.within_tolerance and report.speedup is not None

    from syncopt.artifact import load_artifact
    from syncopt.runtimes import load

    artifact = load_artifact(report.artifact)
    assert artifact.format == "onnx" and artifact.precision == "int8"
    out = load(artifact).run(artifact.spec.example_inputs(T=30, seed=3))
    assert out["offset_logits"].shape == (1, 31, 30) and np.isfinite(out["offset_logits"]).all()


def test_empty_calibration_set_is_an_error():
    import syncopt

    spec = syncopt.create("fcn", "tiny").spec
    with pytest.raises(UsageError, match="empty calibration set"):
        calibration_set(spec, QuantizeConfig(calibration_clips=0))


def test_cli_quantize_errors(capsys, tmp_path):
    for argv, code in ((["quantize", "fcnn"], 2), (["quantize", "fcn", "--calibration-clips", "0"], 2),
                       (["quantize", "fcn", "--method", "qat"], 2)):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(tmp_path)])
        assert exc.value.code == code
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


@pytest.mark.slow
def test_inc_pt2e_tuning_runs_and_saves(tmp_path):
    config = QuantizeConfig(method="inc", weights=str(shipped_weights("fcn", "tiny")), calibration_clips=4,
                            eval_clips=16)
    report = quantize("fcn", config, tmp_path)
    assert report.artifact.endswith(".pt2") and (tmp_path / report.artifact.split("/")[-1]).is_file()
    assert report.accuracy_drop <= 1.0 + 100 / 16  # one clip of slack on 16 held-out clips
    assert report.offset_agreement >= 0.8
