"""Training windows whose audio reaches K frames beyond the video, as evaluation's windows get it."""

from __future__ import annotations

import numpy as np
import torch

from syncopt.data.datasets import Augment
from syncopt.training.losses import context_frames
from syncopt.models.layers import TemporalCorrelation
from syncopt.models.two_tower import context_correlation
from syncopt.models.registry import create

K = 15


def _clip(t: int = 75) -> dict[str, torch.Tensor]:
    """An in-sync clip whose video and audio carry their own frame number (audio: in each of its 4 columns)."""
    frames = torch.arange(t, dtype=torch.float32)
    return {"video": frames[None].repeat(3, 1), "audio": frames.repeat_interleave(4)[None, None].repeat(1, 13, 1),
            "labels": torch.zeros(t, dtype=torch.int64), "valid": torch.ones(t, dtype=torch.bool)}


def _augment(window: int = 25, seed: int = 0) -> Augment:
    # no noise, masks or tempo: the frame numbers must survive
    return Augment(window=window, max_shift=K, max_offset=K, lips=True, jitter=0.0, audio_noise=0.0, tempo=0.0,
                   time_masks=0, freq_masks=0, audio_context=K, rng=np.random.default_rng(seed))


def test_context_windows_pair_every_frame_with_its_own_audio_at_the_label() -> None:
    augment, seen = _augment(), set()
    for _ in range(400):
        item = augment(_clip())
        assert tuple(item["video"].shape) == (3, 25) and tuple(item["audio"].shape) == (1, 13, 4 * (25 + 2 * K))
        amplitude = item["video"][0, 1] - item["video"][0, 0]  # the articulation-amplitude draw scales video
        video = torch.round(item["video"][0] / amplitude)
        audio = item["audio"][0, 0, ::4]
        mask = context_frames(item["labels"][None], item["valid"][None], item["audio_valid"][None])[0]
        assert bool(mask.all())  # in-sync clips: the true partner is always real audio
        for t in range(25):
            label = int(item["labels"][t])
            assert audio[t - label + K] == video[t]  # video frame t matches audio frame t - o
        assert bool((audio[~item["audio_valid"]] == 0).all())  # beyond the clip: zero audio, marked invalid
        seen.add(int(item["labels"][0]))
    assert seen == set(range(-K, K + 1))  # every offset is drawn, even on a 75-frame clip


def test_context_correlation_equals_the_whole_clip_correlation_inside_it() -> None:
    torch.manual_seed(0)
    video, audio = torch.randn(2, 8, 90), torch.randn(2, 8, 90)
    whole = TemporalCorrelation(K)(video, audio)
    lo, hi = 30, 55
    window = context_correlation(video[..., lo:hi], audio[..., lo - K:hi + K], K)
    torch.testing.assert_close(window, whole[..., lo:hi])
    valid = torch.ones(2, hi - lo + 2 * K, dtype=torch.bool)
    valid[:, :K] = False  # the audio before the window is missing: those partners score 0
    masked = context_correlation(video[..., lo:hi], audio[..., lo - K:hi + K], K, valid)
    t, o = np.meshgrid(np.arange(hi - lo), np.arange(-K, K + 1))
    missing = torch.from_numpy(t - o < 0)
    assert bool((masked[:, missing] == 0).all())
    torch.testing.assert_close(masked[:, ~missing], whole[..., lo:hi][:, ~missing])


def test_lip_model_takes_audio_with_context_and_trains_on_it() -> None:
    from syncopt.training.train import context_loss

    torch.manual_seed(0)
    model = create("fcn_lips", "tiny").train()
    augment = Augment(window=25, max_shift=K, max_offset=K, lips=True, audio_context=K, rng=np.random.default_rng(1))
    clip = {"video": torch.randn(120, 80), "audio": torch.randn(1, 13, 320), "labels": torch.zeros(80, dtype=torch.int64),
            "valid": torch.ones(80, dtype=torch.bool)}
    items = [augment(clip) for _ in range(4)]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("video", "audio", "labels", "valid", "audio_valid")}
    loss, outputs = context_loss(model, batch)
    assert tuple(outputs["offset_logits"].shape) == (4, 2 * K + 1, 25) and torch.isfinite(loss)
    loss.backward()
    assert model.video_encoder.features[0].weight.grad.abs().sum() > 0
    same = model.eval()(batch["video"], batch["audio"][..., :100])  # same-length audio: the usual forward
    assert tuple(same["offset_logits"].shape) == (4, 2 * K + 1, 25)


def test_context_loss_skips_the_frames_whose_video_tower_reaches_past_the_window() -> None:
    from syncopt.training.train import context_loss

    torch.manual_seed(0)
    model = create("fcn_lips", "tiny").eval()
    margin = (model.spec.min_frames - 1) // 2
    augment = Augment(window=25, max_shift=K, max_offset=K, lips=True, audio_context=K, rng=np.random.default_rng(1))
    clip = {"video": torch.randn(120, 80), "audio": torch.randn(1, 13, 320), "labels": torch.zeros(80, dtype=torch.int64),
            "valid": torch.ones(80, dtype=torch.bool)}
    items = [augment(clip) for _ in range(4)]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("video", "audio", "labels", "valid", "audio_valid")}
    forward = model.forward_context

    def noisy(frames: list[int]):
        def run(*args, **kwargs):
            out = dict(forward(*args, **kwargs))
            out["offset_logits"] = out["offset_logits"].clone()
            out["offset_logits"][..., frames] += 10 * torch.randn_like(out["offset_logits"][..., frames])
            return out
        return run

    with torch.no_grad():
        clean = context_loss(model, batch)[0]
        model.forward_context = noisy([*range(margin), *range(25 - margin, 25)])
        edges = context_loss(model, batch)[0]
        model.forward_context = noisy([12])
        middle = context_loss(model, batch)[0]
    assert margin > 0 and torch.equal(clean, edges) and not torch.equal(clean, middle)
