"""X3D-XS/S/M/L with the state-dict layout of pytorchvideo's hub ``x3d_xs/x3d_s/x3d_m/x3d_l``.

Keys follow pytorchvideo/models/x3d.py (``create_x3d``): ``blocks.0`` the (2+1)D stem (note
pytorchvideo's naming: ``conv.conv_t`` is the 1x3x3 spatial conv, ``conv.conv_xy`` the
depthwise 5x1x1 temporal conv, applied in that order), ``blocks.1-4`` residual stages
(``res_blocks.N.branch1_conv/branch1_norm/branch2.{conv_a,norm_a,conv_b,norm_b.0,norm_b.1.block.{0,2},
conv_c,norm_c}``), ``blocks.5`` the head (``pool.pre_conv``, ``pool.pre_norm``, ``pool.post_conv``
and the classifier ``proj``, kept for loading and unused in ``forward``). XS, S and M share one
architecture (they differ in clip length and crop size only); L is deeper (depth factor 5.0).

Time at the video rate: X3D has no temporal stride. Where the reference pools over the whole
clip, here only space is averaged: the squeeze-excitation gates squeeze each frame's spatial
grid (the reference squeezes T, H, W), and the head's projected pool (pre_conv -> mean over
H, W -> post_conv -> ReLU) yields a 2048-d feature per frame. No MaxPool3d, no adaptive pools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from syncopt.models.video.stage import Stage


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """pytorchvideo's ``round_width`` (pytorchvideo/layers/utils.py)."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * width else out)


class SqueezeExcitation(nn.Module):
    """fvcore's SE layout (``block.0`` reduce, ``block.2`` expand), squeezed per frame."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv3d(channels, reduced, 1), nn.ReLU(inplace=True),
                                   nn.Conv3d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(3, 4), keepdim=True))


class Stem(nn.Module):
    def __init__(self, cout: int) -> None:
        super().__init__()
        self.conv = nn.Module()
        self.conv.conv_t = nn.Conv3d(3, cout, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv.conv_xy = nn.Conv3d(cout, cout, (5, 1, 1), padding=(2, 0, 0), bias=False, groups=cout)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv.conv_xy(self.conv.conv_t(x))))


class Bottleneck(nn.Module):
    """1x1x1 -> depthwise 3x3x3 (+SE) -> Swish -> 1x1x1."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int, se_channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
        self.norm_a = nn.BatchNorm3d(inner)
        self.conv_b = nn.Conv3d(inner, inner, 3, stride=(1, stride, stride), padding=1, bias=False, groups=inner)
        se = SqueezeExcitation(inner, se_channels) if se_channels else nn.Identity()
        self.norm_b = nn.Sequential(nn.BatchNorm3d(inner), se)
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm_a(self.conv_a(x)))
        x = nn.functional.silu(self.norm_b(self.conv_b(x)))  # pytorchvideo's Swish
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, stride: int, se_channels: int) -> None:
        super().__init__()
        # pytorchvideo: a projection shortcut when shape changes; its norm only when channels do
        self.branch1_conv = (nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False)
                             if cin != cout or stride > 1 else None)
        self.branch1_norm = nn.BatchNorm3d(cout) if cin != cout else None
        self.branch2 = Bottleneck(cin, inner, cout, stride, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
        if self.branch1_norm is not None:
            shortcut = self.branch1_norm(shortcut)
        return torch.relu(shortcut + self.branch2(x))


class Head(nn.Module):
    """Projected pool per frame; ``proj`` (the Kinetics classifier) is not applied."""

    def __init__(self, cin: int, inner: int, cout: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.Module()
        self.pool.pre_conv = nn.Conv3d(cin, inner, 1, bias=False)
        self.pool.pre_norm = nn.BatchNorm3d(inner)
        self.pool.post_conv = nn.Conv3d(inner, cout, 1, bias=False)
        self.proj = nn.Linear(cout, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.pool.pre_norm(self.pool.pre_conv(x)))
        x = torch.relu(self.pool.post_conv(x.mean(dim=(3, 4), keepdim=True)))
        return x[:, :, :, 0, 0]


@dataclass(frozen=True)
class X3DConfig:
    """``create_x3d`` arguments (pytorchvideo/models/x3d.py defaults, X3D paper Table 1)."""

    depth_factor: float = 2.2
    width_factor: float = 2.0
    stem_dim_in: int = 12
    base_depths: tuple[int, int, int, int] = (1, 2, 5, 3)
    bottleneck_factor: float = 2.25
    se_ratio: float = 0.0625
    head_dim_out: int = 2048
    num_classes: int = 400


class X3D(nn.Module):
    """``(B, 3, T, H, W) -> (B, out_channels, T)``; H, W multiples of 32, any T >= 1."""

    spatial_stride = 32
    min_frames = 1

    def __init__(self, cfg: X3DConfig) -> None:
        super().__init__()
        cin = round_width(cfg.stem_dim_in, cfg.width_factor)
        blocks: list[nn.Module] = [Stem(cin)]
        dim = cfg.stem_dim_in
        for i, base in enumerate(cfg.base_depths):
            if i > 0:
                dim = round_width(dim, 2.0)
            cout = round_width(dim, cfg.width_factor)
            inner = int(cfg.bottleneck_factor * cout)
            se = round_width(inner, cfg.se_ratio)
            depth = int(math.ceil(cfg.depth_factor * base))
            # SE on every other block, starting with the first (pytorchvideo create_x3d_res_stage)
            blocks.append(Stage([ResBlock(cin if j == 0 else cout, inner, cout, 2 if j == 0 else 1,
                                          se if j % 2 == 0 else 0) for j in range(depth)]))
            cin = cout
        blocks.append(Head(cin, inner, cfg.head_dim_out, cfg.num_classes))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = cfg.head_dim_out

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = video
        for block in self.blocks:
            x = block(x)
        return x


_TINY = X3DConfig(depth_factor=0.5, width_factor=0.5, stem_dim_in=8, head_dim_out=64, num_classes=10)

PRESETS: dict[tuple[str, str], X3DConfig] = {
    ("x3d_xs", "full"): X3DConfig(),
    ("x3d_s", "full"): X3DConfig(),
    ("x3d_m", "full"): X3DConfig(),
    ("x3d_l", "full"): X3DConfig(depth_factor=5.0),
    ("x3d_xs", "tiny"): _TINY,
    ("x3d_s", "tiny"): _TINY,
    ("x3d_m", "tiny"): _TINY,
    ("x3d_l", "tiny"): X3DConfig(depth_factor=1.0, width_factor=1.0, stem_dim_in=8, head_dim_out=64, num_classes=10),
}


def build(name: str, preset: str) -> X3D:
    return X3D(PRESETS[(name, preset)])
