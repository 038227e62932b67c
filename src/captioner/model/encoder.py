"""Encoder: a backbone trunk pooled to an N x N grid, output (B, N, N, C).

When the last `fine_tune_blocks` blocks are trained, the trunk is seen as two parts: a frozen
`prefix` (everything before those blocks) and a trainable `suffix` (those blocks, the pooling).
`forward` is `suffix(prefix(x))`; training can cache the prefix's output once per image
(`captioner prepare --before-blocks N`) and run only the suffix each step. The blocks are the
trunk's own modules, so the saved weights are the trunk's state dict either way.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from captioner.model.backbones import get_backbone


class Encoder(nn.Module):
    def __init__(self, backbone: str, grid: int, pretrained: bool = True, fine_tune_blocks: int = 0):
        super().__init__()
        self.spec = get_backbone(backbone)
        self.trunk = self.spec.build(pretrained)
        self.grid = grid
        self.pool = nn.AdaptiveAvgPool2d((grid, grid))
        self.fine_tune_blocks = 0
        self.set_fine_tuning(fine_tune_blocks)
        self.trunk.eval()  # also before any .train()/.eval() call: see `train`

    @property
    def channels(self) -> int:
        return self.spec.channels

    def set_fine_tuning(self, n_blocks: int) -> None:
        """Freeze the trunk except its last `n_blocks` blocks."""
        self.fine_tune_blocks = n_blocks
        for p in self.trunk.parameters():
            p.requires_grad = False
        if n_blocks > 0:
            for block in self.spec.blocks(self.trunk)[-n_blocks:]:
                for p in block.parameters():
                    p.requires_grad = True

    def train(self, mode: bool = True):
        """The trunk always runs in eval mode: its batch-norm statistics (and stochastic depth) stay
        frozen, also for the blocks being fine-tuned (small batches, small dataset)."""
        super().train(mode)
        self.trunk.eval()
        return self

    def prefix(self, images: torch.Tensor, n_blocks: int | None = None) -> torch.Tensor:
        """The trunk up to (not including) its last `n_blocks` blocks: (B, C', h, w)."""
        n = self.fine_tune_blocks if n_blocks is None else n_blocks
        if n == 0:
            return self.trunk(images)
        return self.spec.split(self.trunk, n)[0](images)

    def suffix(self, x: torch.Tensor, n_blocks: int | None = None) -> torch.Tensor:
        """The last `n_blocks` blocks and the pooling: (B, C', h, w) -> (B, N, N, C)."""
        n = self.fine_tune_blocks if n_blocks is None else n_blocks
        fmap = self.spec.split(self.trunk, n)[1](x) if n else x
        if fmap.shape[-2:] != (self.grid, self.grid):
            fmap = self.pool(fmap)
        return fmap.permute(0, 2, 3, 1).contiguous()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.suffix(self.trunk(images), 0)

    def tuned_state(self) -> dict:
        """The weights (and batch-norm buffers) of the blocks being fine-tuned: what a model saves,
        the rest of the trunk being the backbone's own pretrained weights."""
        owners = {id(m) for b in self.spec.blocks(self.trunk)[-self.fine_tune_blocks:] for m in b.modules()} \
            if self.fine_tune_blocks else set()
        out = {}
        for name, mod in self.trunk.named_modules():
            if id(mod) in owners:
                for key, value in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                    out[f"{name}.{key}" if name else key] = value
        return out

    def fingerprint(self) -> str:
        """A short hash of the trunk's weights: which encoder a feature cache was made with."""
        h = hashlib.sha256()
        for k, v in sorted(self.trunk.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
