"""3D ResNets (R3D-18/34/50) and R(2+1)D-18 with torchvision.models.video's state-dict layout.

Keys and shapes equal those of torchvision's ``VideoResNet`` (``stem.*``, ``layer1..4.*``,
``fc.*``; torchvision/models/video/resnet.py), so Kinetics checkpoints load strictly. R3D-34/50
are torchvision's ``VideoResNet`` class with ResNet-34/50 stage depths (torchvision only ships
the 18-layer builders). ``fc`` is kept for loading and never used in ``forward``.

Time at the video rate: every temporal stride of torchvision's models (layers 2-4, their
downsample shortcuts) is set to 1; strides carry no weights, so checkpoints load unchanged.
All temporal kernels are padded, so ``T`` frames in give ``T`` features out; the spatial grid
(input / 16) is averaged with a plain mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm3d(channels), nn.ReLU(inplace=True)]


def _conv(kind: str, cin: int, cout: int, mid: int, stride: int) -> nn.Module:
    """3x3x3 conv (``3d``) or its (2+1)D factorisation (``2plus1d``); spatial stride only."""
    if kind == "3d":
        return nn.Conv3d(cin, cout, 3, stride=(1, stride, stride), padding=1, bias=False)
    # torchvision Conv2Plus1D: Sequential(conv 1x3x3, BN, ReLU, conv 3x1x1)
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        *_bn_relu(mid),
        nn.Conv3d(mid, cout, (3, 1, 1), padding=(1, 0, 0), bias=False),
    )


def _midplanes(cin: int, planes: int) -> int:
    # torchvision: (2+1)D keeps the parameter count of the 3x3x3 conv it replaces
    return (cin * planes * 27) // (cin * 9 + 3 * planes)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, kind: str, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        mid = _midplanes(cin, planes)
        self.conv1 = nn.Sequential(_conv(kind, cin, planes, mid, stride), *_bn_relu(planes))
        self.conv2 = nn.Sequential(_conv(kind, planes, planes, mid, 1), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, kind: str, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Sequential(nn.Conv3d(cin, planes, 1, bias=False), *_bn_relu(planes))
        self.conv2 = nn.Sequential(_conv(kind, planes, planes, _midplanes(cin, planes), stride), *_bn_relu(planes))
        self.conv3 = nn.Sequential(nn.Conv3d(planes, out, 1, bias=False), nn.BatchNorm3d(out))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + shortcut)


@dataclass(frozen=True)
class ResNet3DConfig:
    block: str  # "basic" | "bottleneck"
    conv: str  # "3d" | "2plus1d"
    depths: tuple[int, int, int, int]
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    stem_mid: int = 45  # R(2+1)D stem: 1x7x7 conv to stem_mid channels, then 3x1x1 to widths[0]
    num_classes: int = 400


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet3D(nn.Module):
    """``(B, 3, T, H, W) -> (B, out_channels, T)``; H, W multiples of 16, any T >= 1."""

    spatial_stride = 16
    min_frames = 1

    def __init__(self, cfg: ResNet3DConfig) -> None:
        super().__init__()
        block = _BLOCKS[cfg.block]
        w0 = cfg.widths[0]
        if cfg.conv == "3d":  # torchvision BasicStem
            self.stem = nn.Sequential(nn.Conv3d(3, w0, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
                                      *_bn_relu(w0))
        else:  # torchvision R2Plus1dStem
            self.stem = nn.Sequential(
                nn.Conv3d(3, cfg.stem_mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
                *_bn_relu(cfg.stem_mid),
                nn.Conv3d(cfg.stem_mid, w0, (3, 1, 1), padding=(1, 0, 0), bias=False),
                *_bn_relu(w0),
            )
        cin = w0
        for i, (depth, planes) in enumerate(zip(cfg.depths, cfg.widths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(cfg.conv, cin, planes, 2 if i > 0 and j == 0 else 1))
                cin = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, cfg.num_classes)  # checkpoint compatibility only
        self.out_channels = cin

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.stem(video)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(3, 4))


_TINY_WIDTHS = (8, 16, 24, 32)

PRESETS: dict[tuple[str, str], ResNet3DConfig] = {
    ("r3d_18", "full"): ResNet3DConfig("basic", "3d", (2, 2, 2, 2)),
    ("r3d_34", "full"): ResNet3DConfig("basic", "3d", (3, 4, 6, 3)),
    ("r3d_50", "full"): ResNet3DConfig("bottleneck", "3d", (3, 4, 6, 3)),
    ("r2plus1d_18", "full"): ResNet3DConfig("basic", "2plus1d", (2, 2, 2, 2)),
    ("r3d_18", "tiny"): ResNet3DConfig("basic", "3d", (1, 1, 1, 1), _TINY_WIDTHS, num_classes=10),
    ("r3d_34", "tiny"): ResNet3DConfig("basic", "3d", (1, 1, 2, 1), _TINY_WIDTHS, num_classes=10),
    ("r3d_50", "tiny"): ResNet3DConfig("bottleneck", "3d", (1, 1, 2, 1), (4, 8, 12, 16), num_classes=10),
    ("r2plus1d_18", "tiny"): ResNet3DConfig("basic", "2plus1d", (1, 1, 1, 1), _TINY_WIDTHS, 6, num_classes=10),
}


def build(name: str, preset: str) -> ResNet3D:
    return ResNet3D(PRESETS[(name, preset)])
