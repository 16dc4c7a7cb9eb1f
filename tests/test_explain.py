"""`syncopt explain`: saliency on the mouth of synthetic faces, attention maps that are the model's
own, PNG outputs, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mediautil import write_video
from syncopt.cli import main
from syncopt.data.synth import SynthConfig, make_clip
from syncopt.analysis.explain import attention_weights
from syncopt.models.layers import LocalAttention, shift_time
from syncopt.models.registry import create

PNG = b"\x89PNG\r\n\x1a\n"
S = 48  # the tiny presets' crop size


def mouth_mask() -> np.ndarray:
    """The mouth's box in a static synthetic face (synth.py, motion 0: centre x 0.5, y 0.47 + 0.25;
    half-width at most 0.13 * (0.75 + 0.25 * 1.35 * 1.5) + 0.015 < 0.2, half-height at most
    0.012 + 0.11 + 0.015 < 0.14, in crop units)."""
    y, x = np.mgrid[0:S, 0:S] / S
    return (np.abs(x - 0.5) < 0.2) & (np.abs(y - 0.72) < 0.14)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("explain")
    clip = make_clip(3_000_000, SynthConfig(crop_size=S, num_frames=50, motion=0.0), offset=3)
    video = write_video(folder / "face.avi", clip.frames, clip.audio)
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", str(video), "--out", str(folder / "out"), "--crop", "full"])
    assert exit_info.value.code == 0
    return folder / "out"


def test_explain_writes_pngs_and_index(explained):
    index = json.loads((explained / "index.json").read_text())
    assert index["model"] == "fcn_attn" and index["synthetic_weights"] is True
    [track] = index["tracks"]
    assert track["offset"] == 3 and track["frames"] == 50
    for name in (track["gradcam_png"], track["gradient_png"], track["attention_png"]):
        assert (explained / name).read_bytes()[:8] == PNG
    assert set(track["attention_gates"]) == {"video_encoder.temporal_attention", "audio_encoder.temporal_attention",
                                             "fusion.video_from_audio", "fusion.audio_from_video"}
    arrays = np.load(explained / track["saliency_npz"])
    assert arrays["gradcam"].shape == arrays["gradient"].shape == (50, S, S)
    assert arrays["crops"].shape == (50, S, S, 3)


def test_saliency_concentrates_on_the_mouth(explained):
    arrays = np.load(explained / "track0_saliency.npz")
    mouth = mouth_mask()
    ratios = {}
    for kind in ("gradient", "gradcam"):
        cam = arrays[kind].astype(np.float64)
        peaks = cam.max((1, 2))  # each frame scaled to max 1; Grad-CAM's ReLU may leave a frame all 0
        assert cam.min() >= 0 and np.all((np.abs(peaks - 1) < 1e-3) | ((peaks == 0) & (kind == "gradcam")))
        ratios[kind] = cam[:, mouth].mean() / cam[:, ~mouth].mean()
    print(f"saliency per pixel, mouth / elsewhere: {ratios}")
    assert ratios["gradient"] > 3.0  # a uniform map gives 1
    assert ratios["gradcam"] > 1.15  # 3x3 feature grid: coarse, but still lower-centre
    frames = (arrays["gradient"].astype(np.float64)[:, mouth].mean(1)
              > arrays["gradient"].astype(np.float64)[:, ~mouth].mean(1))
    assert frames.mean() > 0.9


def test_attention_maps_reproduce_the_blocks_outputs():
    model = create("fcn_attn", "tiny").eval()
    seen: list[tuple[LocalAttention, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for module in model.modules():
        if isinstance(module, LocalAttention):
            torch.nn.init.normal_(module.gate)  # the untrained gate is 0: make the attention count
            module.register_forward_hook(lambda m, args, out: seen.append((m, args[0], args[-1], out)))
    with torch.no_grad():
        model(video=torch.randn(1, 3, 20, S, S), audio=torch.randn(1, 1, 13, 80))
    assert len(seen) == 4
    for block, query, context, out in seen:
        weights = attention_weights(block, query, context)
        assert torch.allclose(weights.sum(2), torch.ones(()), atol=1e-5)
        b, c, t = query.shape
        _, v = block.kv(context).reshape(b, 2, block.heads, c // block.heads, t).unbind(1)
        attended = sum(weights[:, :, i:i + 1] * shift_time(v, s)
                       for i, s in enumerate(range(-block.radius, block.radius + 1)))
        assert torch.allclose(query + block.gate * block.out(attended.reshape(b, c, t)), out, atol=1e-5)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    faces = np.zeros((40, 64, 64, 3), np.uint8)
    tone = 0.3 * np.sin(np.arange(40 * 640) / 7.0)
    return {
        "missing": d / "absent.mp4",
        "no_audio": write_video(d / "mute.avi", faces, None),
        "too_short": write_video(d / "short.avi", faces[:3], tone[:3 * 640]),
    }


@pytest.mark.parametrize("case,code,message", [
    ("missing", 3, "video not found: "),
    ("no_audio", 5, "mute.avi has no audio stream"),
    ("too_short", 6, "clip of 3 frames is shorter than the model's receptive field"),
])
def test_bad_input_is_one_line_with_exit_code(bad_inputs, tmp_path, capsys, case, code, message):
    rc, _, err = run_cli(capsys, "explain", str(bad_inputs[case]), "--out", str(tmp_path / "x"), "--crop", "full")
    lines = err.strip().splitlines()
    assert rc == code and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "x" / "index.json").exists()
