"""I3D (Inception-v1 inflated to 3D) with the state-dict layout of pytorch-i3d's ``InceptionI3d``.

Keys follow github.com/piergiaj/pytorch-i3d (pytorch_i3d.py): top-level end points
``Conv3d_1a_7x7``, ``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``, ``Mixed_3b`` ... ``Mixed_5c`` (branches
``b0``, ``b1a``, ``b1b``, ``b2a``, ``b2b``, ``b3b``), each unit a ``conv3d`` + ``bn``
(eps 1e-3), and ``logits.conv3d`` (kept for loading, unused in ``forward``).

pytorch-i3d pads every conv and pool TensorFlow-"SAME" style, computing the padding from the
input size at run time. Here the padding is static: with H, W multiples of the total spatial
stride (32) every stage sees even sizes, where TF-SAME padding is ``max(k - s, 0)`` split
front/back, so the result equals the reference's.

Time at the video rate: the temporal strides of ``Conv3d_1a_7x7``, ``MaxPool3d_4a_3x3`` and
``MaxPool3d_5a_2x2`` (2 in the reference) are 1; with SAME padding every stage keeps T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]


def _same_pad(kernel: Triple, stride: Triple) -> tuple[int, ...]:
    """F.pad amounts (W, H, T order) of TF-SAME padding for inputs divisible by ``stride``."""
    pad: list[int] = []
    for k, s in reversed(list(zip(kernel, stride))):
        total = max(k - s, 0)
        pad += [total // 2, total - total // 2]
    return tuple(pad)


class Unit3D(nn.Module):
    """SAME-padded Conv3d, optional BatchNorm (eps 1e-3) and ReLU (pytorch-i3d ``Unit3D``)."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1),
                 bn_relu: bool = True) -> None:
        super().__init__()
        self.pad = _same_pad(kernel, stride)
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, bias=not bn_relu)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn_relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, self.pad))
        return x if self.bn is None else F.relu(self.bn(x))


class SamePool(nn.Module):
    """SAME-padded (zero-filled, as in pytorch-i3d) 3D max pooling."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.pad = _same_pad(kernel, stride)
        self.pool = nn.MaxPool3d(kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, self.pad))


class InceptionModule(nn.Module):
    """Four branches: 1x1; 1x1->3x3x3; 1x1->3x3x3; maxpool 3x3x3 -> 1x1; concatenated."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, widths[0])
        self.b1a = Unit3D(cin, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(cin, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = SamePool((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


# Inception-v1 mixed-layer widths (b0, b1a, b1b, b2a, b2b, b3b), as in pytorch-i3d / Szegedy et al. 2015
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# max pools before the named end point: (name, kernel); all stride (1, 2, 2) here
_POOLS = {"Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3)), "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3)),
          "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2))}


@dataclass(frozen=True)
class I3DConfig:
    width: float = 1.0  # multiplier on every channel count
    num_classes: int = 400


class InceptionI3d(nn.Module):
    """``(B, 3, T, H, W) -> (B, out_channels, T)``; H, W multiples of 32, any T >= 1."""

    spatial_stride = 32
    min_frames = 1

    def __init__(self, cfg: I3DConfig) -> None:
        super().__init__()

        def w(c: int) -> int:
            return max(2, round(c * cfg.width))

        names: list[str] = []

        def add(name: str, module: nn.Module) -> None:
            self.add_module(name, module)
            names.append(name)

        add("Conv3d_1a_7x7", Unit3D(3, w(64), (7, 7, 7), (1, 2, 2)))
        add("MaxPool3d_2a_3x3", SamePool((1, 3, 3), (1, 2, 2)))
        add("Conv3d_2b_1x1", Unit3D(w(64), w(64)))
        add("Conv3d_2c_3x3", Unit3D(w(64), w(192), (3, 3, 3)))
        cin = w(192)
        for name, widths in _MIXED.items():
            if name in _POOLS:
                pool_name, kernel = _POOLS[name]
                add(pool_name, SamePool(kernel, (1, 2, 2)))
            mixed = InceptionModule(cin, tuple(w(c) for c in widths))
            add(name, mixed)
            cin = mixed.out_channels
        self.logits = Unit3D(cin, cfg.num_classes, bn_relu=False)  # checkpoint compatibility only
        self._order = tuple(names)
        self.out_channels = cin

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = video
        for name in self._order:  # static order, fixed at construction
            x = self._modules[name](x)
        return x.mean(dim=(3, 4))


PRESETS: dict[tuple[str, str], I3DConfig] = {
    ("i3d", "full"): I3DConfig(),
    ("i3d", "tiny"): I3DConfig(width=0.125, num_classes=10),
}


def build(name: str, preset: str) -> InceptionI3d:
    return InceptionI3d(PRESETS[(name, preset)])
