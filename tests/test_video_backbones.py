"""Video backbones: per-frame features at the video rate, reference key layouts, param counts, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from syncopt.core.errors import UsageError, WeightsError
from syncopt.models.video import (
    VIDEO_BACKBONES,
    build_video_backbone,
    load_video_weights,
    video_backbone_names,
)
from syncopt.models.weights import save_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "keys"
NAMES = video_backbone_names()

# Published parameter counts (millions), Kinetics-400 classifier included; sources in docs/backbones.md.
PUBLISHED_M = {
    "r3d_18": 33.4,  # torchvision R3D_18_Weights docs
    "r2plus1d_18": 31.5,  # torchvision R2Plus1D_18_Weights docs
    "x3d_xs": 3.79,  # pytorchvideo model zoo (X3D XS/S/M share one architecture)
    "x3d_s": 3.79,
    "x3d_m": 3.79,
    "x3d_l": 6.15,
    "slowfast_r50": 34.6,  # pytorchvideo model zoo, SlowFast R50 8x8
    "i3d": 12.3,  # Carreira & Zisserman 2017 (12M); 12.3M as quoted in issue 6
    "timesformer": 121.4,  # Bertasius et al. 2021, Table 1 (divided space-time)
}


def _full(name: str) -> nn.Module:
    with torch.device("meta"):
        return build_video_backbone(name, "full")


def _shapes(model: nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_keeps_every_frame(name):
    model = build_video_backbone(name, "tiny").eval()
    stride = model.spatial_stride
    for batch, frames, size in ((1, 8, 2 * stride), (2, 13, 3 * stride)):
        with torch.no_grad():
            out = model(torch.randn(batch, 3, frames, size, size))
        assert out.shape == (batch, model.out_channels, frames)
        assert torch.isfinite(out).all()
        assert not torch.allclose(out[..., 0], out[..., -1])  # frames keep their own features


def test_conv_backbone_features_are_local_in_time():
    """Changing the last frames leaves early frames' features alone (no clip-global pooling)."""
    model = build_video_backbone("x3d_s", "tiny").eval()
    video = torch.randn(1, 3, 40, 64, 64)
    edited = video.clone()
    edited[:, :, -4:] = 0
    with torch.no_grad():
        a, b = model(video), model(edited)
    torch.testing.assert_close(a[..., :8], b[..., :8])
    assert not torch.allclose(a[..., -1], b[..., -1])


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_at_min_frames(name):
    model = build_video_backbone(name, "tiny").eval()
    size = 2 * model.spatial_stride
    with torch.no_grad():
        out = model(torch.randn(1, 3, model.min_frames, size, size))
    assert out.shape == (1, model.out_channels, model.min_frames)


@pytest.mark.parametrize("name", NAMES)
def test_full_preset_runs_on_meta(name):
    model = _full(name)
    assert isinstance(model.out_channels, int) and model.out_channels > 0
    assert not any(isinstance(m, (nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)) for m in model.modules())
    size = 7 * model.spatial_stride
    with torch.device("meta"), torch.no_grad():
        out = model.eval()(torch.empty(2, 3, 11, size, size))
    assert out.shape == (2, model.out_channels, 11)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_full_state_dict_matches_reference_fixture(name):
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert _shapes(_full(name)) == expected


def test_timesformer_keys_match_transformers():
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        ref = transformers.TimesformerForVideoClassification(transformers.TimesformerConfig(num_labels=400))
    assert _shapes(_full("timesformer")) == _shapes(ref)


def test_timesformer_matches_transformers_outputs():
    """Tiny TimeSformer with transformers' weights reproduces its per-frame patch features."""
    transformers = pytest.importorskip("transformers")
    config = transformers.TimesformerConfig(image_size=64, patch_size=16, num_frames=8, hidden_size=32,
                                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                            num_labels=10)
    ref = transformers.TimesformerForVideoClassification(config).eval()
    ours = build_video_backbone("timesformer", "tiny").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        hidden = ref.timesformer(video.transpose(1, 2)).last_hidden_state  # tokens: cls, then (patch, frame)
        expected = hidden[:, 1:].reshape(2, 16, 8, 32).mean(1).transpose(1, 2)
        torch.testing.assert_close(ours(video), expected, atol=1e-5, rtol=1e-4)


def test_x3d_students_use_no_maxpool3d():
    for name in ("x3d_xs", "x3d_s", "x3d_m", "x3d_l"):
        assert not any(isinstance(m, nn.MaxPool3d) for m in _full(name).modules())


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_full_param_counts_match_published(name):
    measured = sum(p.numel() for p in _full(name).parameters()) / 1e6
    assert abs(measured / PUBLISHED_M[name] - 1) <= 0.05, (name, measured)


def test_every_name_has_both_presets_and_unknown_is_usage_error():
    assert {preset for _, preset in VIDEO_BACKBONES} == {"tiny", "full"}
    assert all((name, preset) in VIDEO_BACKBONES for name in NAMES for preset in ("tiny", "full"))
    with pytest.raises(UsageError, match="r3d_18"):
        build_video_backbone("r3d_81", "tiny")


@pytest.mark.parametrize("wrap", ["safetensors", "plain", "model_state", "module_prefix"])
def test_strict_load_round_trip(wrap, tmp_path):
    source = build_video_backbone("x3d_s", "tiny")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    state = source.state_dict()
    path = tmp_path / ("w.safetensors" if wrap == "safetensors" else "w.pt")
    if wrap == "safetensors":
        save_state_dict(source, path)
    elif wrap == "plain":
        torch.save(state, path)
    elif wrap == "model_state":  # pytorchvideo training checkpoint
        torch.save({"model_state": state, "epoch": 3, "cfg": "x3d"}, path)
    else:
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    target = load_video_weights(build_video_backbone("x3d_s", "tiny"), path).eval()
    video = torch.randn(1, 3, 9, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(video), source.eval()(video), atol=0, rtol=0)


@pytest.mark.parametrize("edit,named", [
    ("drop", "blocks.5.proj.weight"),
    ("extra", "blocks.9.bogus"),
    ("reshape", "blocks.0.conv.conv_t.weight"),
])
def test_mismatched_checkpoint_names_the_key(edit, named, tmp_path):
    state = build_video_backbone("x3d_s", "tiny").state_dict()
    if edit == "drop":
        del state[named]
    elif edit == "extra":
        state[named] = torch.zeros(1)
    else:
        state[named] = torch.zeros(3, 3, 1, 3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as info:
        load_video_weights(build_video_backbone("x3d_s", "tiny"), tmp_path / "bad.pt")
    message = str(info.value)
    assert named in message and "x3d_s" in message and "\n" not in message


def test_unreadable_wrapper_keeps_the_original_error(tmp_path):
    torch.save({"model_state": {"a": 1}, "epoch": 3}, tmp_path / "odd.pt")
    with pytest.raises(WeightsError, match="not a state dict"):
        load_video_weights(build_video_backbone("i3d", "tiny"), tmp_path / "odd.pt")
