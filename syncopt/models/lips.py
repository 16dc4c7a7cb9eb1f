"""``fcn_lips``: a dense sync model on face-mesh lip motion and MFCC.

The video tower reads the 40 lip-contour points of the face mesh, aligned to the face and with the
track's median shape and motion scale removed (:func:`syncopt.data.lipfeatures.lip_motion`), instead of pixels: the
geometry is the same on filmed and rendered faces, so training on a few speakers carries to others.
Both towers are temporal convolutions padded in time (dense, any length above the receptive field);
the correlation volume and predictor are the FCN's (:class:`TwoTowerSync`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from syncopt.core.spec import ModelSpec, Preprocessing, TensorSpec
from syncopt.data.lipfeatures import LIP_CHANNELS
from syncopt.models.layers import frame_projection
from syncopt.models.registry import register_model
from syncopt.models.two_tower import TwoTowerSync


# The per-frame timeline pools 1 s of frames: one frame's lip motion rarely decides an offset (held-out real
# clips: 1-s windows follow audio shifts on 80% of windows, whole clips on all; docs/real_video.md).
TIMELINE_FRAMES = 25
# Offsets ranked by the towers' cosine alone: the FCN predictor's learned refinement of the correlation
# volume fits the training clips' timing. R1's recipe (train_v5, three seeds), development clips, 1-s / 2-s
# windows shift-following: refined 87.1 / 96.7% (mean), the same models decided by their cosine 88.6 / 99.2%,
# trained without the refinement 89.3-90.5 / 97.1-98.4% (docs/real_video.md, "Seventh round").
REFINE_OFFSETS = False


@dataclass(frozen=True)
class LipsConfig:
    video_blocks: tuple[tuple[int, int], ...]  # (channels, temporal kernel) of the lip tower
    audio_maps: tuple[tuple[int, int, int], ...]  # (channels, freq stride, time stride) 2-D MFCC convs
    audio_blocks: tuple[tuple[int, int], ...]  # (channels, temporal kernel) after the MFCC convs, at 25 Hz
    hidden: int
    embed_dim: int
    max_offset: int = 15

    @property
    def receptive_field(self) -> int:
        return 1 + sum(k - 1 for _, k in self.video_blocks)

    @property
    def context(self) -> int:
        audio = 2 + sum(k // 2 for _, k in self.audio_blocks)
        return max((self.receptive_field - 1) // 2, audio) + self.max_offset + 4


PRESETS = {
    "full": LipsConfig(video_blocks=((128, 5), (128, 5), (128, 3), (128, 3)),
                       audio_maps=((16, 1, 1), (32, 1, 2), (64, 2, 2), (64, 2, 1)),
                       audio_blocks=((128, 5), (128, 3)), hidden=128, embed_dim=64),
    "tiny": LipsConfig(video_blocks=((32, 5), (32, 3)), audio_maps=((8, 1, 1), (16, 1, 2), (32, 2, 2), (32, 2, 1)),
                       audio_blocks=((32, 3),), hidden=64, embed_dim=32),
}


def _temporal(cin: int, blocks: tuple[tuple[int, int], ...]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for cout, k in blocks:
        layers += [nn.Conv1d(cin, cout, k, padding=k // 2), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers), cin


class LipEncoder(nn.Module):
    """``(B, 80, T)`` lip motion -> ``(B, D, T)``."""

    def __init__(self, cfg: LipsConfig) -> None:
        super().__init__()
        self.features, width = _temporal(LIP_CHANNELS, cfg.video_blocks)
        self.projection = frame_projection(width, cfg.hidden, cfg.embed_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(video))


class MfccEncoder(nn.Module):
    """``(B, 1, 13, 4T)`` normalised MFCC -> ``(B, D, T)``: 2-D convs striding time by 4, mean over
    frequency, then temporal convs at the frame rate."""

    def __init__(self, cfg: LipsConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for cout, sf, st in cfg.audio_maps:
            layers += [nn.Conv2d(cin, cout, 3, stride=(sf, st), padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.maps = nn.Sequential(*layers)
        self.temporal, width = _temporal(cin, cfg.audio_blocks)
        self.projection = frame_projection(width, cfg.hidden, cfg.embed_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.projection(self.temporal(self.maps(audio).mean(dim=2)))


def lips_spec(preset: str, cfg: LipsConfig) -> ModelSpec:
    n_off = 2 * cfg.max_offset + 1
    return ModelSpec(
        name="fcn_lips",
        preset=preset,
        inputs=(
            TensorSpec(name="video", shape=("B", LIP_CHANNELS, "T"), layout="NCT", value_range=(-3.0, 3.0),
                       description="face-mesh lip contour (40 points, x then y), face-aligned, the track's median "
                                   "shape removed, divided by the track's RMS motion; 25 fps"),
            TensorSpec(name="audio", shape=("B", 1, 13, "4*T"), layout="NCFT", value_range=(-3.0, 3.0),
                       description="MFCC (python_speech_features defaults), 4 per frame, mean and variance "
                                   "normalised over the clip per coefficient"),
        ),
        outputs=(
            TensorSpec(name="video_emb", shape=("B", cfg.embed_dim, "T"), layout="NCT"),
            TensorSpec(name="audio_emb", shape=("B", cfg.embed_dim, "T"), layout="NCT"),
            TensorSpec(name="correlation", shape=("B", n_off, "T"), layout="NCT",
                       description="cosine similarity of video t and audio t-o, o = -K..K"),
            TensorSpec(name="offset_logits", shape=("B", n_off, "T"), layout="NCT"),
            TensorSpec(name="sync_prob", shape=("B", "T"), layout="NT", value_range=(0.0, 1.0)),
        ),
        preprocessing=Preprocessing(crop_size=0, video_features="lips", audio_norm="clip"),
        min_frames=cfg.receptive_field,
        context_frames=cfg.context,
        max_offset=cfg.max_offset,
        timeline_frames=TIMELINE_FRAMES,
    )


@register_model("fcn_lips", "dense sync on face-mesh lip motion and MFCC (transfers from few speakers to real video)")
def build_fcn_lips(preset: str) -> TwoTowerSync:
    cfg = PRESETS[preset]
    return TwoTowerSync(lips_spec(preset, cfg), LipEncoder(cfg), MfccEncoder(cfg), predictor_hidden=64,
                        refine_offsets=REFINE_OFFSETS)
