"""The original MFCC CNN audio tower: SyncNet MFCC ``(B, 1, 13, 4T)`` -> ``(B, C, T)``.

This is the FCN's own audio encoder (:class:`~syncopt.reference_models.fcn.AudioEncoderFCN`,
presets of the ``fcn`` model), exposed as a backbone so the two-tower students reuse it as
their small audio CNN: a Conv2d stack whose time strides multiply to 4 (4 MFCC steps at 100 Hz
per 25 fps frame), a mean over frequency and per-frame 1x1 projections. Its keys equal the
``fcn`` model's ``audio_encoder.*`` keys without that prefix.
"""

from __future__ import annotations

from typing import Literal

from syncopt.reference_models.fcn import PRESETS, AudioEncoderFCN


class MFCCAudioCNN(AudioEncoderFCN):
    """``(B, 1, 13, 4T)`` MFCC -> ``(B, embed_dim, T)``."""

    input_kind: Literal["waveform", "mfcc"] = "mfcc"

    def __init__(self, preset: str) -> None:
        cfg = PRESETS[("fcn", preset)]
        super().__init__(cfg)
        self.out_channels = cfg.embed_dim


def build_mfcc_cnn(preset: str) -> MFCCAudioCNN:
    return MFCCAudioCNN(preset)
