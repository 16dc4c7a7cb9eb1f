"""The original MFCC CNN audio tower: SyncNet MFCC ``(B, 1, 13, 4T)`` -> ``(B, C, T)``.

This is the FCN's own audio encoder (:class:`~syncopt.models.fcn.AudioEncoderFCN`,
presets of the ``fcn`` model), exposed as a backbone so the two-tower models can reuse it: a
Conv2d stack whose time strides multiply to 4 (4 MFCC steps at 100 Hz per 25 fps frame), a
mean over frequency and per-frame 1x1 projections. ``mfcc_cnn``'s keys equal the ``fcn``
model's ``audio_encoder.*`` keys without that prefix.

``mfcc_cnn_half`` is the students' audio tower: at ``full`` the same stack at half the widths
(a quarter of the 335 MMACs per second of audio), so the audio tower stays small beside a
student's video tower; its ``tiny`` preset is ``mfcc_cnn``'s.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from syncopt.models.fcn import PRESETS, AudioEncoderFCN, FCNConfig


class MFCCAudioCNN(AudioEncoderFCN):
    """``(B, 1, 13, 4T)`` MFCC -> ``(B, embed_dim, T)``."""

    input_kind: Literal["waveform", "mfcc"] = "mfcc"

    def __init__(self, cfg: FCNConfig) -> None:
        super().__init__(cfg)
        self.out_channels = cfg.embed_dim


def build_mfcc_cnn(preset: str) -> MFCCAudioCNN:
    return MFCCAudioCNN(PRESETS[("fcn", preset)])


def build_mfcc_cnn_half(preset: str) -> MFCCAudioCNN:
    cfg = PRESETS[("fcn", preset)]
    if preset == "full":
        cfg = dataclasses.replace(cfg, audio_blocks=tuple((c // 2, sf, st) for c, sf, st in cfg.audio_blocks),
                                  hidden=cfg.hidden // 2, embed_dim=cfg.embed_dim // 2)
    return MFCCAudioCNN(cfg)
