"""TimeSformer (divided space-time attention) with transformers' ``TimesformerForVideoClassification`` layout.

Keys follow transformers/models/timesformer/modeling_timesformer.py (itself a port of
facebookresearch/TimeSformer): ``timesformer.embeddings.{cls_token,position_embeddings,
time_embeddings,patch_embeddings.projection}``, ``timesformer.encoder.layer.N.{temporal_layernorm,
temporal_attention.{attention.qkv,output.dense},temporal_dense,layernorm_before,
attention.{attention.qkv,output.dense},layernorm_after,intermediate.dense,output.dense}``,
``timesformer.layernorm`` and ``classifier`` (kept for loading, unused in ``forward``), so
a ``facebook/timesformer-*`` checkpoint's ``model.safetensors`` loads strictly.

Each block attends over time per patch, then over space per frame (with the class token),
then an MLP: the same computation as the reference, with attention written as
matmul + softmax. Time at the video rate: patches are per frame (no tubelets), so the token
grid keeps every frame; the output is each frame's patch tokens after the final LayerNorm,
averaged over space. The learned time (and position) embeddings are resized to the input's
T (and grid) by nearest interpolation, as the reference does, so any T >= 1 runs. Temporal
attention is global over the clip, so unlike the convolutional backbones a frame's feature
depends on the whole clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention; submodule names as transformers' ``TimeSformerAttention``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.qkv = nn.Linear(dim, 3 * dim)
        self.output = nn.Module()
        self.output.dense = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        h = self.heads
        q, k, v = self.attention.qkv(x).reshape(n, length, 3, h, dim // h).permute(2, 0, 3, 1, 4).unbind(0)
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dim // h), dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(n, length, dim)
        return self.output.dense(out)


class Layer(nn.Module):
    """Divided space-time block: temporal attention, spatial attention (+cls), MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.temporal_layernorm = nn.LayerNorm(dim, eps=eps)
        self.temporal_attention = Attention(dim, heads)
        self.temporal_dense = nn.Linear(dim, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=eps)
        self.attention = Attention(dim, heads)
        self.layernorm_after = nn.LayerNorm(dim, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(dim, hidden)
        self.output = nn.Module()
        self.output.dense = nn.Linear(hidden, dim)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))

    def forward(self, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cls (B, 1, D)``, patch tokens ``x (B, T, P, D)`` -> the same shapes."""
        b, t, p, d = x.shape
        per_patch = x.transpose(1, 2).reshape(b * p, t, d)
        temporal = self.temporal_attention(self.temporal_layernorm(per_patch))
        x = x + self.temporal_dense(temporal.reshape(b, p, t, d).transpose(1, 2))
        per_frame = torch.cat([cls.expand(b, t, d).reshape(b * t, 1, d), x.reshape(b * t, p, d)], dim=1)
        spatial = self.attention(self.layernorm_before(per_frame))
        cls = cls + spatial[:, 0].reshape(b, t, d).mean(1, keepdim=True)  # class token: mean over frames
        x = x + spatial[:, 1:].reshape(b, t, p, d)
        return self._mlp(cls), self._mlp(x)


@dataclass(frozen=True)
class TimeSformerConfig:
    """transformers ``TimesformerConfig`` defaults: TimeSformer-base, 8 frames, 224 px."""

    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_hidden: int = 3072
    patch: int = 16
    image_size: int = 224
    num_frames: int = 8
    eps: float = 1e-6
    num_classes: int = 400


class TimeSformer(nn.Module):
    """``(B, 3, T, H, W) -> (B, out_channels, T)``; H, W multiples of the patch size, any T >= 1."""

    min_frames = 1

    def __init__(self, cfg: TimeSformerConfig) -> None:
        super().__init__()
        self.grid = cfg.image_size // cfg.patch
        self.spatial_stride = cfg.patch
        self.timesformer = nn.Module()
        emb = self.timesformer.embeddings = nn.Module()
        emb.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        emb.position_embeddings = nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, cfg.dim))
        emb.time_embeddings = nn.Parameter(torch.zeros(1, cfg.num_frames, cfg.dim))
        emb.patch_embeddings = nn.Module()
        emb.patch_embeddings.projection = nn.Conv2d(3, cfg.dim, cfg.patch, stride=cfg.patch)
        self.timesformer.encoder = nn.Module()
        self.timesformer.encoder.layer = nn.ModuleList(
            Layer(cfg.dim, cfg.heads, cfg.mlp_hidden, cfg.eps) for _ in range(cfg.depth))
        self.timesformer.layernorm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.classifier = nn.Linear(cfg.dim, cfg.num_classes)  # checkpoint compatibility only
        self.out_channels = cfg.dim
        for param in (emb.cls_token, emb.position_embeddings, emb.time_embeddings):
            nn.init.trunc_normal_(param, std=0.02)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        emb = self.timesformer.embeddings
        b, c, t, height, width = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, height, width)
        patches = emb.patch_embeddings.projection(frames)  # (B*T, D, h, w)
        d, h, w = patches.shape[1:]
        x = patches.flatten(2).transpose(1, 2).reshape(b, t, h * w, d)
        grid = emb.position_embeddings[:, 1:].transpose(1, 2).reshape(1, d, self.grid, self.grid)
        pos = F.interpolate(grid, size=(h, w), mode="nearest").flatten(2).transpose(1, 2)  # (1, h*w, D)
        times = F.interpolate(emb.time_embeddings.transpose(1, 2), size=t, mode="nearest").transpose(1, 2)
        x = x + pos.unsqueeze(1) + times.unsqueeze(2)
        cls = emb.cls_token + emb.position_embeddings[:, :1]
        for layer in self.timesformer.encoder.layer:
            cls, x = layer(cls, x)
        x = self.timesformer.layernorm(x).mean(2)  # (B, T, D)
        return x.transpose(1, 2)


PRESETS: dict[tuple[str, str], TimeSformerConfig] = {
    ("timesformer", "full"): TimeSformerConfig(),
    ("timesformer", "tiny"): TimeSformerConfig(dim=32, depth=2, heads=2, mlp_hidden=64, image_size=64,
                                               num_classes=10),
}


def build(name: str, preset: str) -> TimeSformer:
    return TimeSformer(PRESETS[(name, preset)])
