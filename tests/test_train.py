"""Training: checkpoints and resume, run-directory outputs; shipped weights detect offsets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import syncopt
from syncopt.data.datasets import synth_dataset
from syncopt.training.evaluate import evaluate_dataset
from syncopt.models.sources import shipped_weights
from syncopt.training.train import TrainConfig, train


def test_train_writes_run_and_resumes(tmp_path):
    config = TrainConfig(model="fcn", train_clips=24, val_clips=8, epochs=2, batch_size=8, workers=1)
    first = train(config, tmp_path)
    assert first.epochs_done == 2 and len(first.history) == 2
    for name in ("checkpoint.pt", "model.safetensors", "config.json", "report.json"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "config.json").read_text()) == {"model": "fcn", "preset": "tiny"}
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no pickled code needed
    assert state["epoch"] == 2
    before = syncopt.create("fcn", "tiny", weights=tmp_path / "model.safetensors").state_dict()

    resumed = train(config.model_copy(update={"epochs": 3}), tmp_path)
    assert [h.epoch for h in resumed.history] == [1, 2, 3]  # epochs 1-2 came from the checkpoint
    assert resumed.history[0] == first.history[0]
    after = syncopt.create("fcn", "tiny", weights=tmp_path / "model.safetensors").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ["fcn", "fcn_attn"])
def test_shipped_synthetic_weights_detect_known_offsets(name):
    weights = shipped_weights(name, "tiny")
    assert weights is not None, f"{name}_tiny_synth.safetensors is missing from syncopt/assets"
    model = syncopt.create(name, "tiny", weights=weights)
    data = synth_dataset(model.spec, "test", 24, num_frames=75, kinds={"constant": 1.0})
    report = evaluate_dataset(model, data)
    assert report.context_accuracy_pm1[15] >= 0.9
    assert report.context_accuracy[15] >= 0.8
    assert report.per_frame_accuracy >= 0.6


def test_audio_shift_augmentation_keeps_labels_true():
    from syncopt.data.datasets import Augment

    t = 80
    video = torch.arange(t, dtype=torch.float32).repeat(3, 1)[:, :, None, None].expand(3, t, 2, 2).clone()
    audio = torch.arange(t, dtype=torch.float32).repeat_interleave(4)[None, None].expand(1, 13, 4 * t).clone()
    item = {"video": video, "audio": audio, "labels": torch.zeros(t, dtype=torch.long),
            "valid": torch.ones(t, dtype=torch.bool)}
    aug = Augment(window=30, max_shift=15, brightness=0, contrast=0, time_masks=0, freq_masks=0,
                  rng=np.random.default_rng(3))
    seen = set()
    for _ in range(40):
        out = aug(item)
        frames, labels = out["video"][0, :, 0, 0], out["labels"]
        assert len(set(labels.tolist())) == 1 and abs(int(labels[0])) <= 15
        seen.add(int(labels[0]))
        for tt in range(30):
            u = tt - int(labels[tt])  # video frame tt matches audio frame tt - o
            if 0 <= u < 30:
                assert out["audio"][0, 0, 4 * u] == frames[tt]
    assert len(seen) > 10  # many different offsets are drawn


def test_train_on_a_folder_of_videos(tmp_path):
    from mediautil import write_video
    from syncopt.data.synth import SynthConfig, make_clip

    data = tmp_path / "videos"
    data.mkdir()
    for i in range(3):
        clip = make_clip(i, SynthConfig(num_frames=80), offset=0)
        write_video(data / f"clip{i}.avi", clip.frames, clip.audio)
    (data / "broken.mp4").write_bytes(b"not a video")
    config = TrainConfig(model="fcn", data=str(data), crop="full", epochs=1, batch_size=2, workers=1)
    report = train(config, tmp_path / "run")
    assert report.epochs_done == 1 and np.isfinite(report.history[0].loss)


def test_fine_tuning_starts_from_the_init_weights(tmp_path):
    config = TrainConfig(model="fcn", train_clips=8, val_clips=16, epochs=1, batch_size=4, workers=1, lr=1e-6)
    tuned = train(config.model_copy(update={"init": "shipped"}), tmp_path / "tuned")
    fresh = train(config, tmp_path / "fresh")
    # the shipped synthetic weights find the offsets; one epoch at a tiny rate moves them little
    assert tuned.history[0].val.context_accuracy_pm1[15] > 0.9 > fresh.history[0].val.context_accuracy_pm1[15]
    run = train(config.model_copy(update={"init": str(tmp_path / "tuned")}), tmp_path / "again")
    assert run.history[0].val.context_accuracy_pm1[15] > 0.9  # a run directory works too
    from syncopt.core.atomic import sha256_file
    from syncopt.models.sources import shipped_weights

    assert tuned.init_sha256 == sha256_file(shipped_weights("fcn", "tiny")) and fresh.init_sha256 is None
    assert run.init_sha256 == sha256_file(tmp_path / "tuned" / "model.safetensors")


def test_missing_init_weights_are_a_one_line_error(tmp_path):
    from syncopt.core.errors import UsageError

    config = TrainConfig(model="fcn", train_clips=8, val_clips=4, epochs=1, batch_size=4, workers=1,
                         init=str(tmp_path / "nothing"))
    with pytest.raises(UsageError, match="no weights file there"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()
