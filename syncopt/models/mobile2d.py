"""The 2D-lowered video tower of the ``mobile_2d`` student.

TFLite's CONV_3D kernel is float-only, so a full-integer INT8 mobile model cannot contain 3D
convolutions (DESIGN.md, "Mobile students"). This tower folds time into the batch, runs a
MobileNet-style stack of Conv2d blocks (a dense stem, then depthwise 3x3 + pointwise 1x1) on
every frame, averages each frame's feature map, and mixes neighbouring frames with two
Conv1d layers (kernel 3, padded): ``(B, 3, T, S, S) -> (B, C, T)``. Every operator has an
INT8 TFLite builtin (CONV_2D, DEPTHWISE_CONV_2D, MEAN, RESHAPE, TRANSPOSE).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Mobile2DConfig:
    widths: tuple[int, ...]  # output channels of the stem, then of each separable block (each stride 2)
    temporal_kernel: int = 3


PRESETS = {
    "full": Mobile2DConfig(widths=(32, 64, 128, 256, 512)),
    "tiny": Mobile2DConfig(widths=(8, 16, 32, 64)),
}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Mobile2DVideo(nn.Module):
    """``(B, 3, T, S, S)`` face crops -> ``(B, out_channels, T)``; S a multiple of ``spatial_stride``."""

    min_frames = 1

    def __init__(self, cfg: Mobile2DConfig) -> None:
        super().__init__()
        layers = _conv_bn(3, cfg.widths[0], 3, 2)
        for cin, cout in zip(cfg.widths, cfg.widths[1:]):
            layers += _conv_bn(cin, cin, 3, 2, groups=cin) + _conv_bn(cin, cout, 1, 1)
        self.frames = nn.Sequential(*layers)
        width, k = cfg.widths[-1], cfg.temporal_kernel
        self.temporal = nn.Sequential(nn.Conv1d(width, width, k, padding=k // 2), nn.BatchNorm1d(width),
                                      nn.ReLU(inplace=True), nn.Conv1d(width, width, k, padding=k // 2))
        self.out_channels = width
        self.spatial_stride = 2 ** len(cfg.widths)
        self.temporal_radius = 2 * (k // 2)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        x = video.transpose(1, 2).reshape(b * t, c, h, w)
        x = self.frames(x).mean(dim=(2, 3))  # (B*T, C)
        x = x.reshape(b, t, -1).transpose(1, 2)
        return self.temporal(x)
