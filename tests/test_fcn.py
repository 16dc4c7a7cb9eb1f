"""FCN models: dense length-T outputs, correlation geometry, chunk and batch invariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import syncopt
from syncopt.models.decode import decode_dense
from syncopt.models.layers import LocalAttention, TemporalCorrelation, shift_time
from syncopt.models.fcn import two_tower_spec
from syncopt.models.two_tower import TwoTowerSync

FCN_MODELS = ["fcn", "fcn_attn"]


@pytest.mark.parametrize("name", FCN_MODELS)
@pytest.mark.parametrize("frames", [5, 6, 17, 64])
def test_output_length_equals_input_length(name, frames):
    model = syncopt.create(name, "tiny")
    with torch.no_grad():
        out = model(**model.spec.example_inputs(T=frames))
    k = model.spec.max_offset
    assert out["video_emb"].shape[-1] == out["audio_emb"].shape[-1] == frames
    assert out["offset_logits"].shape == out["correlation"].shape == (1, 2 * k + 1, frames)
    assert out["sync_prob"].shape == (1, frames)


def test_shift_time_moves_and_zero_fills():
    x = torch.arange(1.0, 6.0)
    assert shift_time(x, 2).tolist() == [0, 0, 1, 2, 3]
    assert shift_time(x, -1).tolist() == [2, 3, 4, 5, 0]
    assert shift_time(x, 9).tolist() == [0] * 5


@pytest.mark.parametrize("k", [-7, 0, 4, 15])
def test_correlation_peaks_at_the_shift(k):
    t, kmax = 60, 15
    base = torch.randn(1, 32, t + 40)
    video = base[..., 20:20 + t]
    audio = base[..., 20 + k:20 + k + t]  # audio[t] = video[t + k]: offset k
    corr = TemporalCorrelation(kmax)(video, audio)
    assert corr.shape == (1, 2 * kmax + 1, t)
    peak = corr[0].argmax(0) - kmax
    assert (peak[kmax:t - kmax] == k).all()
    torch.testing.assert_close(corr[0, k + kmax, kmax:t - kmax], torch.ones(t - 2 * kmax))


class _PixelsPerFrame(nn.Module):
    """Identity-like video encoder: each frame's pixels are its embedding."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        return video.permute(0, 1, 3, 4, 2).reshape(b, c * h * w, t)


class _MfccPerFrame(nn.Module):
    """Identity-like audio encoder: a frame's 12x4 MFCC block is its embedding."""

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        b, _, f, steps = audio.shape
        x = audio[:, 0, :12].reshape(b, 12, steps // 4, 4)
        return x.permute(0, 1, 3, 2).reshape(b, 48, steps // 4)


@pytest.mark.parametrize("k", [-5, 0, 3, 11])
def test_identity_encoders_give_offset_at_the_shift(k):
    t, kmax = 50, 15
    spec = two_tower_spec("identity", "tiny", crop_size=4, embed_dim=48, max_offset=kmax, min_frames=1,
                          context_frames=kmax)
    model = TwoTowerSync(spec, _PixelsPerFrame(), _MfccPerFrame()).eval()
    feats = torch.randn(t + 40, 48)  # one 48-d feature per frame, with margin for the shift
    video = feats[20:20 + t].reshape(t, 3, 4, 4).permute(1, 0, 2, 3)[None]  # (1, 3, T, 4, 4)
    audio_feats = feats[20 + k:20 + k + t]  # audio frame t carries video frame t + k
    audio = torch.zeros(1, 1, 13, 4 * t)
    audio[0, 0, :12] = audio_feats.reshape(t, 12, 4).permute(1, 0, 2).reshape(12, 4 * t)
    with torch.no_grad():
        out = model(video=video, audio=audio)
    result = decode_dense(out["offset_logits"][0], out["sync_prob"][0])
    assert result.offset == k
    assert result.confidence > 1.0
    assert all(o == k for o in result.per_frame_offset[kmax:t - kmax])


@pytest.mark.parametrize("name", FCN_MODELS)
def test_long_clip_equals_overlapping_chunks_away_from_edges(name):
    model = syncopt.create(name, "tiny")
    _activate_zero_initialised_paths(model)
    feeds = model.spec.example_inputs(T=200, seed=5)
    margin = model.spec.context_frames  # the spec's claim of the model's temporal reach, checked here
    with torch.no_grad():
        full = model(**feeds)
        for start, length in ((0, 120), (80, 120)):
            chunk = {"video": feeds["video"][:, :, start:start + length],
                     "audio": feeds["audio"][..., 4 * start:4 * (start + length)]}
            part = model(**chunk)
            inner = slice(margin, length - margin)
            for key, value in part.items():
                torch.testing.assert_close(value[..., inner], full[key][..., start + margin:start + length - margin],
                                           atol=1e-5, rtol=1e-4, msg=f"{name}:{key}")


def _activate_zero_initialised_paths(model: nn.Module) -> None:
    """Open the residual attention gates and the predictor's refinement, as training would."""
    for module in model.modules():
        if isinstance(module, LocalAttention):
            nn.init.constant_(module.gate, 1.0)
    nn.init.normal_(model.predictor.refine[-1].weight, std=0.5)


@pytest.mark.parametrize("name", FCN_MODELS)
def test_batch_invariance(name):
    model = syncopt.create(name, "tiny")
    _activate_zero_initialised_paths(model)
    a = model.spec.example_inputs(T=30, seed=1)
    b = model.spec.example_inputs(T=30, seed=2)
    batch = {k: torch.cat([a[k], b[k]]) for k in a}
    with torch.no_grad():
        both, only_b = model(**batch), model(**b)
    for key in both:
        torch.testing.assert_close(both[key][1:], only_b[key], atol=1e-5, rtol=1e-4)


def test_local_attention_equals_banded_dense_attention():
    torch.manual_seed(3)
    attn = LocalAttention(8, heads=2, radius=3)
    nn.init.constant_(attn.gate, 1.0)
    x, ctx = torch.randn(1, 8, 12), torch.randn(1, 8, 12)
    # reference: dense (T x T) attention per head with a |i - j| <= radius band mask
    q = attn.q(x).reshape(2, 4, 12)
    k, v = attn.kv(ctx).reshape(2, 2, 4, 12).unbind(0)
    scores = torch.einsum("hdi,hdj->hij", q, k) / 2.0
    band = (torch.arange(12)[:, None] - torch.arange(12)[None, :]).abs() <= 3
    weights = torch.softmax(scores.masked_fill(~band, float("-inf")), dim=-1)
    expected = x + attn.out(torch.einsum("hij,hdj->hdi", weights, v).reshape(1, 8, 12))
    torch.testing.assert_close(attn(x, ctx), expected, atol=1e-5, rtol=1e-4)
    # an untrained block (gate 0) is the identity
    torch.testing.assert_close(LocalAttention(8, 2, 3)(x, ctx), x)


@pytest.mark.parametrize("name", ["fcn", "fcn_attn", "syncnet_v2"])
def test_chunked_inference_equals_one_pass(name):
    from syncopt.inference.infer import run_dense

    model = syncopt.create(name, "tiny")
    if name != "syncnet_v2":
        _activate_zero_initialised_paths(model)
    frames = 150 if name != "syncnet_v2" else 40
    feeds = model.spec.example_inputs(T=frames, seed=7)
    with torch.no_grad():
        whole = model(**feeds)
    chunked = run_dense(model, feeds["video"], feeds["audio"], chunk=11)
    for key, value in whole.items():
        torch.testing.assert_close(chunked[key], value, atol=1e-5, rtol=1e-4, msg=key)
