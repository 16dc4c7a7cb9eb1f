"""SlowFast-R50 (8x8) with the state-dict layout of pytorchvideo's hub ``slowfast_r50``.

Keys follow pytorchvideo/models/slowfast.py (``create_slowfast``): ``blocks.0-4`` are
two-pathway stages (``multipathway_blocks.0`` slow, ``.1`` fast; stems ``conv/norm``, residual
stages ``res_blocks.N.branch1_conv/branch1_norm/branch2.{conv,norm}_{a,b,c}``) with a
fast-to-slow lateral ``multipathway_fusion.{conv_fast_to_slow,norm}`` after blocks 0-3;
``blocks.5`` is the parameter-free pool-and-concat, ``blocks.6.proj`` the Kinetics classifier
(kept for loading, unused in ``forward``).

Time at the video rate: the fast pathway already runs at full rate with no temporal stride.
The slow pathway natively sees every alpha-th frame (alpha = 4) and the lateral convs stride
by alpha. Here the slow pathway runs on every frame and the laterals have stride 1; the slow
pathway's temporal kernels (``conv_a`` 3x1x1 in res4/res5; its stem and pools are 1xkxk) are
dilated by alpha. A dilated slow pathway on all frames equals the reference slow pathway run
on each of the alpha frame phases, interleaved (up to clip-edge padding), so the pretrained
temporal receptive fields are unchanged and the output has one feature per frame: slow and
fast features concatenated and averaged over H, W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from syncopt.models.video.stage import Stage


class Stem(nn.Module):
    def __init__(self, cout: int, t_kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, cout, (t_kernel, 7, 7), stride=(1, 2, 2), padding=(t_kernel // 2, 3, 3), bias=False)
        self.norm = nn.BatchNorm3d(cout)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.norm(self.conv(x))))


class Bottleneck(nn.Module):
    """Tx1x1 -> 1x3x3 -> 1x1x1 (pytorchvideo ``create_bottleneck_block``)."""

    def __init__(self, cin: int, inner: int, cout: int, t_kernel: int, t_dilation: int, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, (t_kernel, 1, 1), padding=(t_dilation * (t_kernel // 2), 0, 0),
                                dilation=(t_dilation, 1, 1), bias=False)
        self.norm_a = nn.BatchNorm3d(inner)
        self.conv_b = nn.Conv3d(inner, inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.norm_b = nn.BatchNorm3d(inner)
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm_a(self.conv_a(x)))
        x = torch.relu(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, t_kernel: int, t_dilation: int, stride: int) -> None:
        super().__init__()
        project = cin != cout or stride > 1
        self.branch1_conv = nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False) if project else None
        self.branch1_norm = nn.BatchNorm3d(cout) if project else None
        self.branch2 = Bottleneck(cin, inner, cout, t_kernel, t_dilation, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return torch.relu(shortcut + self.branch2(x))


class FastToSlow(nn.Module):
    """Lateral connection: conv the fast features (stride 1 in time here), concat onto slow."""

    def __init__(self, fast_dim: int, ratio: int, t_kernel: int) -> None:
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(fast_dim, fast_dim * ratio, (t_kernel, 1, 1),
                                           padding=(t_kernel // 2, 0, 0), bias=False)
        self.norm = nn.BatchNorm3d(fast_dim * ratio)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, torch.relu(self.norm(self.conv_fast_to_slow(fast)))], 1)


class Pathways(nn.Module):
    """One stage of both pathways, then the lateral fusion (``None`` after the last stage)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: FastToSlow | None) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slow, fast = self.multipathway_blocks[0](slow), self.multipathway_blocks[1](fast)
        if self.multipathway_fusion is not None:
            slow = self.multipathway_fusion(slow, fast)
        return slow, fast


class Head(nn.Module):
    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cin, num_classes)  # checkpoint compatibility only


@dataclass(frozen=True)
class SlowFastConfig:
    """``create_slowfast`` arguments of the hub ``slowfast_r50`` (SlowFast paper, 8x8 R50)."""

    depths: tuple[int, int, int, int] = (3, 4, 6, 3)
    slow_stem: int = 64
    beta_inv: int = 8  # fast channels = slow channels / beta_inv
    fusion_ratio: int = 2  # lateral conv widens fast channels by this
    fusion_kernel: int = 7
    alpha: int = 4  # slow pathway's temporal stride in the reference: the dilation here
    slow_t_kernels: tuple[int, int, int, int] = (1, 1, 3, 3)
    fast_t_kernels: tuple[int, int, int, int] = (3, 3, 3, 3)
    num_classes: int = 400


class SlowFast(nn.Module):
    """``(B, 3, T, H, W) -> (B, out_channels, T)``; H, W multiples of 32, any T >= 1."""

    spatial_stride = 32
    min_frames = 1

    def __init__(self, cfg: SlowFastConfig) -> None:
        super().__init__()
        b, r = cfg.beta_inv, cfg.fusion_ratio
        fast_stem = cfg.slow_stem // b
        blocks: list[nn.Module] = [Pathways(Stem(cfg.slow_stem, 1), Stem(fast_stem, 5),
                                            FastToSlow(fast_stem, r, cfg.fusion_kernel))]
        dim_in, dim_out = cfg.slow_stem, cfg.slow_stem * 4
        for i, depth in enumerate(cfg.depths):
            stride = 1 if i == 0 else 2
            pathways = []
            for cin, div, t_kernel, dilation in ((dim_in + dim_in * r // b, 1, cfg.slow_t_kernels[i], cfg.alpha),
                                                 (dim_in // b, b, cfg.fast_t_kernels[i], 1)):
                cout = dim_out // div
                pathways.append(Stage([ResBlock(cin if j == 0 else cout, dim_out // 4 // div, cout, t_kernel,
                                                dilation, stride if j == 0 else 1) for j in range(depth)]))
            last = i == len(cfg.depths) - 1
            blocks.append(Pathways(*pathways, None if last else FastToSlow(dim_out // b, r, cfg.fusion_kernel)))
            dim_in, dim_out = dim_out, dim_out * 2
        self.out_channels = dim_in + dim_in // b
        blocks.append(nn.Identity())  # blocks.5: the reference's parameter-free pool-and-concat
        blocks.append(Head(self.out_channels, cfg.num_classes))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        slow, fast = video, video
        for i in range(5):
            slow, fast = self.blocks[i](slow, fast)
        return torch.cat([slow, fast], 1).mean(dim=(3, 4))


PRESETS: dict[tuple[str, str], SlowFastConfig] = {
    ("slowfast_r50", "full"): SlowFastConfig(),
    ("slowfast_r50", "tiny"): SlowFastConfig(depths=(1, 1, 1, 1), slow_stem=8, beta_inv=4, num_classes=10),
}


def build(name: str, preset: str) -> SlowFast:
    return SlowFast(PRESETS[(name, preset)])
