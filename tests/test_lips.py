"""Face-mesh lip features, the per-clip feature cache and the fcn_lips model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from syncopt.data.lipfeatures import (EYE_OUTER, LIP_CHANNELS, LIPS_OUTER, lip_inputs, lip_motion, lip_shape,
                                      mirror_channels, normalise_mfcc, speech_energy)
from syncopt.core.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures"


def _mesh(n: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, (1, 468, 3)).repeat(n, 0).astype(np.float64)
    points[:, EYE_OUTER[0], :2] = (-1.0, -1.0)
    points[:, EYE_OUTER[1], :2] = (1.0, -1.0)
    points[:, list(LIPS_OUTER[1:10]), 1] += 0.05 * np.sin(np.arange(n))[:, None]  # the lower lip moves
    return points


def test_lip_shape_ignores_where_the_head_is_and_how_it_is_turned() -> None:
    points = _mesh()
    n = len(points)
    yaw, roll = np.linspace(-0.5, 0.5, n), np.linspace(0.3, -0.2, n)  # the head turns and tilts as it speaks
    moved = np.empty_like(points)
    for t in range(n):
        cy, sy, cr, sr = np.cos(yaw[t]), np.sin(yaw[t]), np.cos(roll[t]), np.sin(roll[t])
        rot = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        moved[t] = (2 + t / n) * points[t] @ rot.T + np.array([120.0 + t, -40.0, 3.0])
    np.testing.assert_allclose(lip_shape(moved), lip_shape(points), atol=1e-4)
    assert not np.allclose(lip_shape(points)[0], lip_shape(points)[1])  # but it does see the lips move


def test_lip_motion_is_centred_and_scale_free() -> None:
    shape = lip_shape(_mesh())
    motion = lip_motion(shape)
    assert motion.shape == (LIP_CHANNELS, len(shape))
    np.testing.assert_allclose(np.median(motion, axis=1), 0, atol=1e-5)
    assert np.sqrt(np.mean(motion ** 2)) == pytest.approx(1.0, rel=1e-5)
    centre = np.median(shape, axis=0, keepdims=True)
    wider = centre + 3 * (shape - centre)  # a speaker who articulates three times as widely
    np.testing.assert_allclose(lip_motion(wider), motion, atol=1e-5)


def test_normalised_mfcc_does_not_depend_on_the_recording_level() -> None:
    from syncopt.data.media import mfcc_for_frames

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000) * np.sin(np.linspace(0, 20, 16000)) ** 2).astype(np.float32)
    quiet, loud = (normalise_mfcc(mfcc_for_frames(a, 25)) for a in (audio, 8 * audio))
    np.testing.assert_allclose(quiet.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(quiet.std(1), 1, atol=1e-3)
    np.testing.assert_allclose(quiet, loud, atol=1e-3)


def test_speech_energy_is_per_frame_and_louder_in_speech() -> None:
    audio = np.zeros(16000, np.float32)
    audio[8000:] = 0.3 * np.sin(2 * np.pi * 800 * np.arange(8000) / 16000)
    energy = speech_energy(audio, 25)
    assert energy.shape == (25,)
    assert energy[15:].min() > energy[:10].max() + 5


def test_cache_extracts_once_and_hits_by_content(tmp_path: Path) -> None:
    from syncopt.data.lipcache import load_or_extract

    clip = load_or_extract(FIXTURES / "grid_sbwe5n.mpg", tmp_path)
    assert clip.num_frames == 75 and clip.frames == 75 and clip.mfcc.shape == (13, 300)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    renamed = tmp_path / "renamed.mpg"
    shutil.copyfile(FIXTURES / "grid_sbwe5n.mpg", renamed)
    again = load_or_extract(renamed, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and again.sha256 == clip.sha256
    np.testing.assert_array_equal(again.lips, clip.lips)
    video, audio = lip_inputs(again.lips, again.mfcc)
    assert tuple(video.shape) == (LIP_CHANNELS, 75) and tuple(audio.shape) == (1, 13, 300)


def test_lip_model_trains_only_on_real_video(tmp_path: Path) -> None:
    from syncopt.training.train import TrainConfig, train

    with pytest.raises(UsageError, match="trains on real video"):
        train(TrainConfig(model="fcn_lips", epochs=1), tmp_path / "run")


def test_lip_model_ranks_offsets_by_cosine_alone() -> None:
    """fcn_lips's offset logits are the scaled correlation whatever its refinement learned; the refinement
    still drives the in-sync probability."""
    import torch

    from syncopt.models.registry import create

    torch.manual_seed(0)
    net = create("fcn_lips", "tiny").eval()
    torch.nn.init.normal_(net.predictor.refine[-1].weight, std=0.5)  # as training would move it
    torch.nn.init.normal_(net.predictor.refine[-1].bias, std=0.5)
    with torch.no_grad():
        out = net(torch.randn(1, LIP_CHANNELS, 40), torch.randn(1, 1, 13, 160))
    assert torch.allclose(out["offset_logits"], net.predictor.scale * out["correlation"], atol=1e-6)
    assert out["sync_prob"].std() > 1e-3


def test_mirror_channels_take_a_real_face_onto_its_mirror_image(tmp_path: Path) -> None:
    from syncopt.data.lipcache import load_or_extract

    index, sign = mirror_channels()
    assert sorted(index) == list(range(LIP_CHANNELS))
    np.testing.assert_array_equal(np.array(index)[index], np.arange(LIP_CHANNELS))  # mirroring twice is the identity
    rest = np.median(load_or_extract(FIXTURES / "grid_sbwe5n.mpg", tmp_path).lips, axis=0).reshape(-1)
    mirrored = rest[index] * np.array(sign)
    # a face is nearly symmetric, so its lips' mirror image lies close to them; x negated alone does not
    error, unswapped = np.abs(mirrored - rest).mean(), np.abs(rest * np.array(sign) - rest).mean()
    assert error < 0.03 < unswapped, (error, unswapped)


def test_mirror_augmentation_shows_half_the_windows_mirrored() -> None:
    import torch

    from syncopt.data.datasets import Augment

    rng = np.random.default_rng(0)
    clip = {"video": torch.from_numpy(rng.standard_normal((LIP_CHANNELS, 60)).astype(np.float32)),
            "audio": torch.from_numpy(rng.standard_normal((1, 13, 240)).astype(np.float32)),
            "labels": torch.zeros(60, dtype=torch.int64), "valid": torch.ones(60, dtype=torch.bool)}
    index, sign = mirror_channels()
    mirrored = 0
    for seed in range(40):
        plain = Augment(window=25, max_shift=5, lips=True, rng=np.random.default_rng(seed))(clip)
        item = Augment(window=25, max_shift=5, lips=True, mirror=0.5, rng=np.random.default_rng(seed))(clip)
        torch.testing.assert_close(item["audio"], plain["audio"])  # the same draws up to the mirror's
        if torch.allclose(item["video"], plain["video"]):
            continue
        torch.testing.assert_close(item["video"], plain["video"][index] * torch.tensor(sign)[:, None])
        mirrored += 1
    assert 10 <= mirrored <= 30
