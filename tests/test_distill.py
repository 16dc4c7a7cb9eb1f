"""Distillation: lower KD loss and better accuracy than an undistilled baseline; one-line errors."""

from __future__ import annotations

import pytest
import torch

import syncopt
from syncopt.cli import main
from syncopt.compress.distill import DistillConfig, distill, kd_loss, paired_datasets
from syncopt.core.errors import UsageError
from syncopt.training.evaluate import predict
from syncopt.models.sources import shipped_weights
from syncopt.training.train import TrainConfig, train

SMALL = dict(preset="tiny", train_clips=128, val_clips=16, epochs=4, batch_size=8, workers=1, seed=0)


def _val_kd(student, teacher, config) -> float:
    _, val_s, val_t = paired_datasets(config, student.spec, teacher.spec)
    s = torch.stack([o["offset_logits"] for o in predict(student, val_s)])
    t = torch.stack([o["offset_logits"] for o in predict(teacher, val_t)])
    return float(kd_loss(s, t, 4.0))


@pytest.mark.slow
def test_distillation_beats_undistilled_baseline(tmp_path):
    teacher_weights = str(shipped_weights("fcn", "tiny"))
    config = DistillConfig(model="mobile_2d", teacher="fcn", teacher_weights=teacher_weights, **SMALL)
    teacher = syncopt.create("fcn", "tiny", weights=teacher_weights)
    before = _val_kd(syncopt.create("mobile_2d", "tiny"), teacher, config)

    report = distill(config, tmp_path / "kd")
    baseline = train(TrainConfig(model="mobile_2d", **SMALL), tmp_path / "baseline")
    for name in ("model.safetensors", "config.json", "report.json", "checkpoint.pt"):
        assert (tmp_path / "kd" / name).is_file()
    assert "from" in report.teacher_source and report.teacher.name == "fcn"
    student = syncopt.create("mobile_2d", "tiny", weights=tmp_path / "kd" / "model.safetensors")
    base_model = syncopt.create("mobile_2d", "tiny", weights=tmp_path / "baseline" / "model.safetensors")
    after = _val_kd(student, teacher, config)
    assert after < 0.8 * before
    assert after < _val_kd(base_model, teacher, config)
    assert report.student.per_frame_accuracy > baseline.history[-1].val.per_frame_accuracy
    assert report.student.macs < report.teacher.macs and report.wall_time_s > 0


def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise():
    a = torch.randn(2, 31, 10)
    assert float(kd_loss(a, a, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(a, torch.randn(2, 31, 10), 4.0)) > 0


def test_paired_clips_share_frames_and_crops():
    config = DistillConfig(model="x3d_s", teacher="i3d_wav2vec", train_clips=2, val_clips=1, clip_frames=30, window=20)
    student, teacher = (syncopt.create(n, "tiny").spec for n in ("x3d_s", "i3d_wav2vec"))
    pairs, val_s, val_t = paired_datasets(config, student, teacher)
    item = pairs[0]
    s_crop, t_crop = student.preprocessing.crop_size, teacher.preprocessing.crop_size
    assert item["video"].shape == (3, 20, s_crop, s_crop) and item["audio"].shape == (1, 13, 80)
    assert item["teacher_video"].shape == (3, 20, t_crop, t_crop) and item["teacher_audio"].shape == (1, 640 * 20)
    assert torch.equal(item["video"], item["teacher_video"])  # same crop, same brightness/contrast draw
    assert len(val_s) == len(val_t) == 1


def test_spec_mismatch_is_a_one_line_error(monkeypatch):
    from syncopt.compress.distill import check_pair

    student = syncopt.create("x3d_s", "tiny").spec
    teacher = syncopt.create("i3d_wav2vec", "tiny").spec
    odd = teacher.model_copy(update={"preprocessing": teacher.preprocessing.model_copy(update={"sample_rate": 8000})})
    with pytest.raises(UsageError, match="disagree on sample rate"):
        check_pair(odd, student)
    fps = teacher.model_copy(update={"preprocessing": teacher.preprocessing.model_copy(update={"fps": 30.0})})
    with pytest.raises(UsageError, match="disagree on fps"):
        check_pair(fps, student)


def test_cli_distill_unknown_model_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["distill", "--teacher", "i3d_wav2vecc", "--student", "x3d_s"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown model 'i3d_wav2vecc'") and "\n" not in err


def test_cli_distill_help_has_example():
    with pytest.raises(SystemExit) as exc:
        main(["distill", "--help"])
    assert exc.value.code == 0
