"""Transfer-learning two-tower sync models: pretrained video and audio backbones, dense sync head.

Each tower is a backbone giving per-frame features at 25 Hz (``(B, C, T)``, see
``video/`` and ``audio/``) and a per-frame projection (1x1 convolutions) into a shared
embedding; :class:`~syncopt.models.two_tower.TwoTowerSync` adds the correlation
volume over offsets -K..K and the predictor, as in the FCN models. Parameter names put each
backbone under ``video_encoder.backbone.`` / ``audio_encoder.backbone.``, which is how
fine-tuning finds the groups it freezes (:mod:`syncopt.training.finetune`).

Pixels enter as ``(pixel/255 - 0.5)/0.5`` like the FCN models (the spec holds one scalar
mean/std); fine-tuning adapts pretrained backbones to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from syncopt.models.fcn import two_tower_spec
from syncopt.models.layers import frame_projection
from syncopt.models.registry import register_model
from syncopt.models.two_tower import TwoTowerSync

MAX_OFFSET = 15
# Frames on each side of an output frame that chunked inference keeps as context: the backbones'
# temporal reach (kernel radii summed; the global-attention audio encoders of wav2vec 2.0,
# HuBERT and Whisper see the whole chunk, so chunked outputs of those are close, not exact),
# plus the correlation's +-K shifts and the predictor's two kernel-5 convolutions.
BACKBONE_CONTEXT = 40


@dataclass(frozen=True)
class TransferConfig:
    """One registered model at one preset (configs as data; see ``MODELS`` below)."""

    video: str  # video backbone name (syncopt.models.video)
    audio: str  # audio backbone name (syncopt.models.audio)
    crop_size: int
    embed_dim: int
    hidden: int


class Tower(nn.Module):
    """A backbone and its per-frame projection: input -> ``(B, embed_dim, T)``."""

    def __init__(self, backbone: nn.Module, hidden: int, embed_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = frame_projection(backbone.out_channels, hidden, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(x))


class TransferSync(TwoTowerSync):
    """A two-tower sync model whose towers wrap named backbones."""

    def load_pretrained(self, video_weights: str | os.PathLike | None = None,
                        audio_weights: str | os.PathLike | None = None) -> TransferSync:
        """Strictly load reference-layout backbone checkpoints (a file, or a transformers directory)."""
        from syncopt.models.audio import load_audio_weights
        from syncopt.models.video import load_video_weights

        if video_weights is not None:
            load_video_weights(self.video_encoder.backbone, video_weights)
        if audio_weights is not None:
            load_audio_weights(self.audio_encoder.backbone, audio_weights)
        return self


def _cfg(video: str, audio: str, full_crop: int, tiny_crop: int, embed: int = 512,
         hidden: int = 512) -> dict[str, TransferConfig]:
    return {"full": TransferConfig(video, audio, full_crop, embed, hidden),
            "tiny": TransferConfig(video, audio, tiny_crop, 32, 64)}


# Teachers' full crops follow each backbone's published input size (I3D, SlowFast and
# TimeSformer: 224; R3D: 112). The students see smaller faces: X3D's published 160 px would cost
# 1/27 of the i3d_wav2vec teacher's MACs, against the goal of 1/50, so the students take 96 px
# face crops, the face size of Wav2Lip's lip-sync expert (Prajwal et al. 2020, "A Lip Sync Expert
# Is All You Need for Speech to Lip Generation In The Wild", Section 3: 96x96 faces), a multiple of
# their stride 32 (mobile_2d at the fcn models' 112 px ran 97x the windowed SyncNet in INT8
# TFLite, against the goal of 100x). They pair it with the half-width MFCC CNN. Tiny crops are
# the smallest multiple of the backbone's spatial stride that keeps CPU training fast (32 for
# stride-32 backbones, 48 for R3D; TimeSformer's tiny patch grid is fixed at 64x64).
MODELS: dict[str, tuple[str, dict[str, TransferConfig]]] = {
    "r3d18_vggish": ("R3D-18 video + VGGish audio teacher", _cfg("r3d_18", "vggish", 112, 48)),
    "i3d_wav2vec": ("I3D video + wav2vec 2.0 audio, the default teacher", _cfg("i3d", "wav2vec2", 224, 32)),
    "slowfast_hubert": ("SlowFast-R50 video + HuBERT audio teacher", _cfg("slowfast_r50", "hubert", 224, 32)),
    "timesformer_whisper": ("TimeSformer video + Whisper encoder audio teacher",
                            _cfg("timesformer", "whisper", 224, 64)),
    "x3d_s": ("student: X3D-S video + small MFCC CNN", _cfg("x3d_s", "mfcc_cnn_half", 96, 32, embed=128, hidden=256)),
    "x3d_xs": ("student: X3D-XS video + small MFCC CNN", _cfg("x3d_xs", "mfcc_cnn_half", 96, 32, embed=128, hidden=256)),
    "mobile_2d": ("student for INT8 TFLite: per-frame Conv2d video + MFCC CNN (no Conv3d)",
                  _cfg("mobile_2d", "mfcc_cnn_half", 96, 32, embed=128, hidden=256)),
}


def _video_backbone(name: str, preset: str) -> nn.Module:
    if name == "mobile_2d":
        from syncopt.models.mobile2d import PRESETS, Mobile2DVideo

        return Mobile2DVideo(PRESETS[preset])
    from syncopt.models.video import build_video_backbone

    return build_video_backbone(name, preset)


def build_transfer(name: str, preset: str) -> TransferSync:
    """Build registered transfer model ``name`` at ``preset`` with random weights."""
    from syncopt.models.audio import build_audio_backbone

    cfg = MODELS[name][1][preset]
    video = _video_backbone(cfg.video, preset)
    audio = build_audio_backbone(cfg.audio, preset)
    spec = two_tower_spec(name, preset, cfg.crop_size, cfg.embed_dim, MAX_OFFSET,
                          min_frames=5, context_frames=BACKBONE_CONTEXT + MAX_OFFSET + 4,
                          audio_features=audio.input_kind, max_frames=getattr(audio, "max_frames", None))
    return TransferSync(spec, Tower(video, cfg.hidden, cfg.embed_dim), Tower(audio, cfg.hidden, cfg.embed_dim),
                        predictor_hidden=64)


def _register(name: str, summary: str) -> None:
    register_model(name, summary)(lambda preset: build_transfer(name, preset))


for _name, (_summary, _) in MODELS.items():
    _register(_name, _summary)
