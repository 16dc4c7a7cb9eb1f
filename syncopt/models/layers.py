"""Dense-in-time building blocks shared by the FCN and two-tower sync models.

All blocks map per-frame features ``(B, C, T)`` to outputs of the same length ``T`` and use
only export-friendly operators: static slicing and padding, elementwise products, reductions,
softmax, 1-D convolutions. Attention is *local* (a window of ``±radius`` frames), written as a
static loop over shifts, so memory grows linearly with ``T`` and a long clip gives the same
outputs as overlapping chunks of it, away from the chunk edges.

Offset convention (the original SyncNet's): offset ``o`` means video frame ``t`` matches audio
frame ``t - o``; a positive offset means the audio leads the video.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def shift_time(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``y[..., t] = x[..., t - shift]`` along the last axis, zero-filled; ``shift`` is static."""
    if shift == 0:
        return x
    if shift > 0:  # pad first, then cut to length: also right when |shift| >= T
        return F.pad(x, (shift, 0))[..., : x.shape[-1]]
    return F.pad(x, (0, -shift))[..., -shift:]


class TemporalCorrelation(nn.Module):
    """Cosine similarity of video frame ``t`` with audio frame ``t - o`` for ``o = -K..K``.

    ``(B, C, T), (B, C, T) -> (B, 2K+1, T)``; channel ``o + K`` holds offset ``o``. Positions
    whose partner frame falls outside the clip score 0.
    """

    def __init__(self, max_offset: int) -> None:
        super().__init__()
        self.max_offset = max_offset

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        v = F.normalize(video, dim=1, eps=1e-6)
        a = F.normalize(audio, dim=1, eps=1e-6)
        k = self.max_offset
        return torch.stack([(v * shift_time(a, o)).sum(1) for o in range(-k, k + 1)], dim=1)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation over channels, squeezed over a local time window.

    Accepts ``(B, C, T)`` or ``(B, C, T, *spatial)``: spatial axes are averaged per frame, then
    the time axis over ``window`` frames (odd), so the gate stays dense and local in time.
    """

    def __init__(self, channels: int, reduction: int = 4, window: int = 9) -> None:
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f"ChannelAttention window must be odd, got {window}")
        hidden = max(channels // reduction, 4)
        self.window = window
        self.fc1 = nn.Conv1d(channels, hidden, 1)
        self.fc2 = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=tuple(range(3, x.dim()))) if x.dim() > 3 else x
        if self.window > 1:
            squeezed = F.avg_pool1d(squeezed, self.window, stride=1, padding=self.window // 2,
                                    count_include_pad=False)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        return x * gate.reshape(gate.shape + (1,) * (x.dim() - 3))


class LocalAttention(nn.Module):
    """Multi-head attention of each query frame over key frames within ``±radius``.

    ``query (B, C, T)`` attends to ``context (B, C, T)`` (the same tensor for self-attention).
    Keys beyond the clip's ends are masked out. Returns ``query + gate * attended``, with the
    gate starting at zero so an untrained block is the identity.
    """

    def __init__(self, channels: int, heads: int = 4, radius: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads, self.radius = heads, radius
        self.q = nn.Conv1d(channels, channels, 1)
        self.kv = nn.Conv1d(channels, 2 * channels, 1)
        self.out = nn.Conv1d(channels, channels, 1)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, t = query.shape
        h, d = self.heads, c // self.heads
        q = self.q(query).reshape(b, h, d, t) / math.sqrt(d)
        k, v = self.kv(context).reshape(b, 2, h, d, t).unbind(1)
        shifts = range(-self.radius, self.radius + 1)
        dots = [(q * shift_time(k, s)).sum(2) for s in shifts]  # (B,h,T) per shift
        # Out-of-clip keys take the shift-0 score (always inside the clip), then zero weight, and the rest
        # is renormalised: the softmax input keeps the in-clip scores' range, so INT8 keeps their
        # resolution (an additive -1e4 mask set its scale to ~39; docs/export.md). All per shift at
        # (B,h,T): onnx2tf 1.28 mis-transposes a (B,1,S,T) mask broadcast to (B,h,S,T) scores.
        valid = [shift_time(torch.ones_like(dots[0]), s) for s in shifts]  # 1 inside the clip, 0 beyond
        centre = dots[self.radius]
        scores = torch.stack([dot * ok + centre * (1.0 - ok) for dot, ok in zip(dots, valid)], dim=2)
        weights = torch.softmax(scores, dim=2)  # (B,h,S,T), out-of-clip shifts still weighted
        kept = sum(weights[:, :, i] * ok for i, ok in enumerate(valid))  # (B,h,T), > 0: holds the top score's weight
        attended = sum(weights[:, :, i:i + 1] * shift_time(v, s) for i, s in enumerate(shifts))  # v is 0 beyond
        attended = attended / kept.unsqueeze(2)
        return query + self.gate * self.out(attended.reshape(b, c, t))


class TemporalAttention(LocalAttention):
    """Local self-attention over time: each frame attends to its ``±radius`` neighbours."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, x)


class CrossModalAttention(nn.Module):
    """Video attends to audio and audio to video (local windows), each with a residual gate."""

    def __init__(self, channels: int, heads: int = 4, radius: int = 4) -> None:
        super().__init__()
        self.video_from_audio = LocalAttention(channels, heads, radius)
        self.audio_from_video = LocalAttention(channels, heads, radius)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.video_from_audio(video, audio), self.audio_from_video(audio, video)


class SyncPredictor(nn.Module):
    """Correlation volume ``(B, 2K+1, T)`` -> per-frame offset logits and in-sync logit.

    Offset logits are ``scale * correlation`` plus a learned temporal refinement initialised
    to zero, so an untrained predictor already ranks offsets by similarity. With
    ``refine_offsets=False`` the refinement yields only the in-sync logit and the offsets are ranked
    by similarity alone.
    """

    def __init__(self, max_offset: int, hidden: int = 64, kernel: int = 5, init_scale: float = 10.0,
                 refine_offsets: bool = True) -> None:
        super().__init__()
        n = 2 * max_offset + 1
        self.refine_offsets = refine_offsets
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.refine = nn.Sequential(
            nn.Conv1d(n, hidden, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.Conv1d(hidden, n + 1 if refine_offsets else 1, 1),
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, correlation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        refined = self.refine(correlation)
        offset_logits = self.scale * correlation
        if self.refine_offsets:
            offset_logits = offset_logits + refined[:, :-1]
        return offset_logits, refined[:, -1]


def frame_projection(width: int, hidden: int, out: int) -> nn.Sequential:
    """Per-frame fully connected layers written as 1x1 convolutions: ``(B, width, T) -> (B, out, T)``."""
    return nn.Sequential(nn.Conv1d(width, hidden, 1), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Conv1d(hidden, out, 1))
