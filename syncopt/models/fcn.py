"""Fully convolutional SyncNet (``fcn``) and its attention variant (``fcn_attn``).

Both towers keep the time axis end to end: the video tower's convolutions are padded in time
and stride only in space, then average over the (fixed) spatial grid; the audio tower strides
its MFCC time axis by 4 (4 MFCC steps per frame) and averages over frequency. Fully connected
layers are 1x1 convolutions. Any clip of at least ``min_frames`` frames gives one embedding per
frame; the same weights serve a 5-frame window and a 10-minute video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from syncopt.core.spec import ModelSpec, Preprocessing, TensorSpec
from syncopt.models.layers import (
    ChannelAttention,
    CrossModalAttention,
    TemporalAttention,
    frame_projection,
)
from syncopt.models.registry import register_model
from syncopt.models.two_tower import TwoTowerSync


@dataclass(frozen=True)
class FCNConfig:
    """Widths and kernels of the FCN towers (configs as data; presets below)."""

    crop_size: int
    video_blocks: tuple[tuple[int, int], ...]  # (channels, temporal kernel); each halves H and W
    audio_blocks: tuple[tuple[int, int, int], ...]  # (channels, freq stride, time stride)
    hidden: int
    embed_dim: int
    max_offset: int = 15
    attention: bool = False
    heads: int = 4
    radius: int = 4  # local attention window: ±radius frames
    se_window: int = 9  # channel-attention squeeze window in frames

    @property
    def receptive_field(self) -> int:
        """Frames of video context per output frame."""
        return 1 + sum(kt - 1 for _, kt in self.video_blocks)

    @property
    def context(self) -> int:
        """Frames on each side one output frame depends on, summed over the stages."""
        attention = 2 * (self.se_window // 2) + self.radius if self.attention else 0  # 2 SE layers, self-attn
        video = (self.receptive_field - 1) // 2 + attention
        audio = 2 + attention  # 3x3 MFCC convs at time strides 1, 2, 2: about 8 steps = 2 frames
        fused = max(video, audio) + (self.radius if self.attention else 0)
        return fused + self.max_offset + 4  # correlation shifts, predictor's two kernel-5 convs


_FULL_VIDEO = ((64, 3), (128, 3), (256, 1), (256, 1), (512, 1))
_FULL_AUDIO = ((64, 1, 1), (128, 1, 2), (256, 2, 2), (256, 1, 1), (512, 2, 1))
_TINY_VIDEO = ((8, 3), (16, 3), (32, 1), (32, 1))
_TINY_AUDIO = ((8, 1, 1), (16, 1, 2), (32, 2, 2), (32, 2, 1))

PRESETS = {
    ("fcn", "full"): FCNConfig(112, _FULL_VIDEO, _FULL_AUDIO, hidden=512, embed_dim=512),
    ("fcn", "tiny"): FCNConfig(48, _TINY_VIDEO, _TINY_AUDIO, hidden=64, embed_dim=32),
    ("fcn_attn", "full"): FCNConfig(112, _FULL_VIDEO, _FULL_AUDIO, hidden=512, embed_dim=512, attention=True,
                                    heads=8),
    ("fcn_attn", "tiny"): FCNConfig(48, _TINY_VIDEO, _TINY_AUDIO, hidden=64, embed_dim=32, attention=True),
}


class VideoEncoderFCN(nn.Module):
    """``(B, 3, T, S, S)`` face crops -> ``(B, D, T)``."""

    def __init__(self, cfg: FCNConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, (cout, kt) in enumerate(cfg.video_blocks):
            ks = 7 if i == 0 else 3
            layers += [nn.Conv3d(cin, cout, (kt, ks, ks), stride=(1, 2, 2), padding=(kt // 2, ks // 2, ks // 2)),
                       nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
            if cfg.attention and i >= len(cfg.video_blocks) - 2:
                layers.append(ChannelAttention(cout, window=cfg.se_window))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.projection = frame_projection(cin, cfg.hidden, cfg.embed_dim)
        self.temporal_attention = TemporalAttention(cfg.embed_dim, cfg.heads, cfg.radius) if cfg.attention else None

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.features(video).mean(dim=(3, 4))
        x = self.projection(x)
        return x if self.temporal_attention is None else self.temporal_attention(x)


class AudioEncoderFCN(nn.Module):
    """``(B, 1, 13, 4T)`` MFCC -> ``(B, D, T)``; the time strides multiply to 4."""

    def __init__(self, cfg: FCNConfig, mfcc_per_frame: int = 4) -> None:
        super().__init__()
        if math.prod(st for _, _, st in cfg.audio_blocks) != mfcc_per_frame:
            raise ValueError(f"audio time strides must multiply to {mfcc_per_frame}")
        layers: list[nn.Module] = []
        cin = 1
        for i, (cout, sf, st) in enumerate(cfg.audio_blocks):
            layers += [nn.Conv2d(cin, cout, 3, stride=(sf, st), padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if cfg.attention and i >= len(cfg.audio_blocks) - 2:
                layers.append(_FrequencySqueeze(ChannelAttention(cout, window=cfg.se_window)))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.projection = frame_projection(cin, cfg.hidden, cfg.embed_dim)
        self.temporal_attention = TemporalAttention(cfg.embed_dim, cfg.heads, cfg.radius) if cfg.attention else None

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.features(audio).mean(dim=2)
        x = self.projection(x)
        return x if self.temporal_attention is None else self.temporal_attention(x)


class _FrequencySqueeze(nn.Module):
    """Apply a ChannelAttention (which expects time on axis 2) to ``(B, C, F, T)`` maps."""

    def __init__(self, attention: ChannelAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x.transpose(2, 3)).transpose(2, 3)


def two_tower_spec(name: str, preset: str, crop_size: int, embed_dim: int, max_offset: int,
                   min_frames: int, context_frames: int, audio_features: str = "mfcc",
                   max_frames: int | None = None) -> ModelSpec:
    """Spec of a dense two-tower model on RGB face crops and MFCC or 16 kHz waveform audio
    (the outputs of TwoTowerSync)."""
    n_off = 2 * max_offset + 1
    if audio_features == "mfcc":
        audio = TensorSpec(name="audio", shape=("B", 1, 13, "4*T"), layout="NCFT",
                           description="MFCC (python_speech_features defaults on int16-scaled 16 kHz audio), 4 per frame")
    else:
        audio = TensorSpec(name="audio", shape=("B", 1, "640*T"), layout="NCT", value_range=(-1.0, 1.0),
                           description="16 kHz mono waveform, 640 samples per frame")
    return ModelSpec(
        name=name,
        preset=preset,
        inputs=(
            TensorSpec(name="video", shape=("B", 3, "T", crop_size, crop_size), layout="NCTHW",
                       value_range=(-1.0, 1.0), description="face crops, RGB, (pixel/255 - 0.5)/0.5, 25 fps"),
            audio,
        ),
        outputs=(
            TensorSpec(name="video_emb", shape=("B", embed_dim, "T"), layout="NCT"),
            TensorSpec(name="audio_emb", shape=("B", embed_dim, "T"), layout="NCT"),
            TensorSpec(name="correlation", shape=("B", n_off, "T"), layout="NCT",
                       description="cosine similarity of video t and audio t-o, o = -K..K"),
            TensorSpec(name="offset_logits", shape=("B", n_off, "T"), layout="NCT"),
            TensorSpec(name="sync_prob", shape=("B", "T"), layout="NT", value_range=(0.0, 1.0)),
        ),
        preprocessing=Preprocessing(crop_size=crop_size, channel_order="rgb", pixel_mean=127.5, pixel_std=127.5,
                                    audio_features=audio_features),
        min_frames=min_frames,
        context_frames=context_frames,
        max_offset=max_offset,
        max_frames=max_frames,
    )


def build_fcn(name: str, preset: str) -> TwoTowerSync:
    cfg = PRESETS[(name, preset)]
    spec = two_tower_spec(name, preset, cfg.crop_size, cfg.embed_dim, cfg.max_offset, cfg.receptive_field,
                          cfg.context)
    fusion = CrossModalAttention(cfg.embed_dim, cfg.heads, cfg.radius) if cfg.attention else None
    return TwoTowerSync(spec, VideoEncoderFCN(cfg), AudioEncoderFCN(cfg), fusion=fusion,
                        predictor_hidden=min(cfg.hidden, 64))


@register_model("fcn", "fully convolutional SyncNet: dense per-frame embeddings, correlation, offsets")
def build_fcn_plain(preset: str) -> TwoTowerSync:
    return build_fcn("fcn", preset)


@register_model("fcn_attn", "FCN SyncNet with channel, local temporal and cross-modal attention")
def build_fcn_attn(preset: str) -> TwoTowerSync:
    return build_fcn("fcn_attn", preset)
