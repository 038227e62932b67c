"""Encoder: a backbone trunk pooled to an N x N grid, output (B, N, N, C)."""
from __future__ import annotations

import torch
from torch import nn

from .backbones import get_backbone


class Encoder(nn.Module):
    def __init__(self, backbone: str, grid: int, pretrained: bool = True, fine_tune_blocks: int = 0):
        super().__init__()
        self.spec = get_backbone(backbone)
        self.trunk = self.spec.build(pretrained)
        self.grid = grid
        self.pool = nn.AdaptiveAvgPool2d((grid, grid))
        self.set_fine_tuning(fine_tune_blocks)

    @property
    def channels(self) -> int:
        return self.spec.channels

    def set_fine_tuning(self, n_blocks: int) -> None:
        """Freeze the trunk except its last `n_blocks` blocks."""
        for p in self.trunk.parameters():
            p.requires_grad = False
        if n_blocks > 0:
            for block in self.spec.blocks(self.trunk)[-n_blocks:]:
                for p in block.parameters():
                    p.requires_grad = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.trunk(images)  # (B, C, h, w)
        if fmap.shape[-2:] != (self.grid, self.grid):
            fmap = self.pool(fmap)
        return fmap.permute(0, 2, 3, 1).contiguous()  # (B, N, N, C)
