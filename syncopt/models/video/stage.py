"""pytorchvideo's ``ResStage``: residual blocks in sequence, kept under ``res_blocks.N`` (its key layout)."""

from __future__ import annotations

import torch
from torch import nn


class Stage(nn.Module):
    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x
