"""Transfer two-tower models: variable length, pretrained backbones, freezing and schedules."""

from __future__ import annotations

import pytest
import torch

import syncopt
from syncopt.core.errors import UsageError, WeightsError
from syncopt.training.finetune import NEVER, apply_schedule, param_groups, parse_schedule
from syncopt.training.losses import sync_losses
from syncopt.models.transfer import MODELS
from syncopt.models.weights import save_state_dict

TRANSFER = list(MODELS)


def test_issue_names_are_registered():
    assert set(TRANSFER) <= set(syncopt.model_names())
    assert {"r3d18_vggish", "i3d_wav2vec", "slowfast_hubert", "timesformer_whisper", "x3d_s", "x3d_xs",
            "mobile_2d"} == set(TRANSFER)


@pytest.mark.parametrize("name", TRANSFER)
def test_variable_length_gives_per_frame_outputs(name):
    model = syncopt.create(name, "tiny")
    assert model.spec.preprocessing.audio_features == model.audio_encoder.backbone.input_kind
    for frames in (7, 13):
        with torch.no_grad():
            out = model(**model.spec.example_inputs(T=frames))
        assert out["offset_logits"].shape == (1, 31, frames) and out["sync_prob"].shape == (1, frames)
        assert torch.isfinite(out["correlation"]).all()


@pytest.mark.parametrize("student", ["x3d_s", "x3d_xs", "mobile_2d"])
def test_full_students_have_at_most_a_fiftieth_of_the_teachers_macs(student):
    """Compression issue's bar, counted on the meta device at the standard length (25 frames)."""
    from syncopt.models.complexity import count_macs

    with torch.device("meta"):
        teacher, small = syncopt.create("i3d_wav2vec", "full"), syncopt.create(student, "full")
    assert count_macs(small, small.spec) <= count_macs(teacher, teacher.spec) / 50


def test_mobile_2d_has_no_3d_convolutions():
    model = syncopt.create("mobile_2d", "full")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Conv3d" not in kinds and "MaxPool3d" not in kinds and "Conv2d" in kinds


def test_pretrained_backbones_load_strictly(tmp_path):
    donor = syncopt.create("x3d_s", "tiny")
    torch.manual_seed(1)
    for p in donor.parameters():
        p.data.normal_()
    video = save_state_dict(donor.video_encoder.backbone, tmp_path / "x3d.safetensors")
    audio = save_state_dict(donor.audio_encoder.backbone, tmp_path / "mfcc.safetensors")
    model = syncopt.create("x3d_s", "tiny", video_weights=video, audio_weights=audio)
    for key, value in donor.video_encoder.backbone.state_dict().items():
        assert torch.equal(model.video_encoder.backbone.state_dict()[key], value), key
    assert torch.equal(model.audio_encoder.backbone.features[0].weight, donor.audio_encoder.backbone.features[0].weight)
    # the projection head stays freshly initialised: only the backbones were given
    assert not torch.equal(model.video_encoder.projection[0].weight, donor.video_encoder.projection[0].weight)


def test_mismatched_backbone_checkpoint_is_a_one_line_error(tmp_path):
    other = save_state_dict(syncopt.create("mobile_2d", "tiny").video_encoder.backbone, tmp_path / "m.safetensors")
    with pytest.raises(WeightsError, match=r"weights do not fit .*missing keys") as info:
        syncopt.create("x3d_s", "tiny", video_weights=other)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="has no pretrained backbones"):
        syncopt.create("fcn", "tiny", video_weights=other)


def test_schedule_parsing():
    assert parse_schedule("audio=2, video=never") == {"audio": 2, "video": NEVER}
    assert parse_schedule(None) == {}
    with pytest.raises(UsageError, match="not GROUP=EPOCH"):
        parse_schedule("backbone=2")
    with pytest.raises(UsageError, match="whole number or 'never'"):
        parse_schedule("video=soon")


def test_frozen_parameters_get_no_gradient_and_do_not_change():
    torch.manual_seed(0)
    model = syncopt.create("x3d_s", "tiny").train()
    schedule = parse_schedule("video=1,audio=never")
    groups = param_groups(model, lr=1e-2, backbone_lr_scale=0.1)
    assert {g["name"]: g["lr"] for g in groups} == {"video": 1e-3, "audio": 1e-3, "head": 1e-2}
    optimizer = torch.optim.AdamW(groups, weight_decay=0.1)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}

    def step(epoch: int) -> list[str]:
        training = apply_schedule(model, schedule, epoch)
        feeds = model.spec.example_inputs(T=12, batch=2)
        labels = torch.randint(-3, 4, (2, 12))
        optimizer.zero_grad(set_to_none=True)
        sync_losses(model(**feeds), labels, torch.ones(2, 12, dtype=torch.bool))["loss"].backward()
        optimizer.step()
        return training

    assert step(0) == ["head"]
    assert not model.video_encoder.backbone.training  # frozen backbones keep their BatchNorm statistics
    for name, param in model.named_parameters():
        frozen = name.startswith(("video_encoder.backbone.", "audio_encoder.backbone."))
        assert (param.grad is None) == frozen, name
        assert torch.equal(param, before[name]) == frozen or not frozen and param.grad.abs().sum() == 0, name
    video_before = {k: v.detach().clone() for k, v in model.video_encoder.backbone.named_parameters()}
    assert step(1) == ["head", "video"]
    changed = [k for k, v in model.video_encoder.backbone.named_parameters() if not torch.equal(v, video_before[k])]
    assert changed, "the video backbone should train from epoch 1"
    assert all(torch.equal(p, before[f"audio_encoder.backbone.{k}"])
               for k, p in model.audio_encoder.backbone.named_parameters())


def test_whisper_models_declare_their_longest_pass_and_chunk_beyond_it():
    from syncopt.core.errors import InputSpecError
    from syncopt.inference.infer import run_dense

    model = syncopt.create("timesformer_whisper", "tiny")
    limit = model.spec.max_frames
    assert limit == 750  # Whisper's 1500 encoder positions, 2 per video frame
    feeds = model.spec.example_inputs(T=limit + 1)
    with pytest.raises(InputSpecError, match="exceed the 750 one pass accepts"):
        model.spec.validate_inputs(feeds)
    out = run_dense(model, feeds["video"], feeds["audio"])
    assert out["sync_prob"].shape == (1, limit + 1) and torch.isfinite(out["sync_prob"]).all()
