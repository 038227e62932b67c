"""`ObjectTagger`: the backbone's ImageNet classifier on the encoder's pooled grid -> `Tag`s.

The encoder's grid is the trunk's last feature map (adaptive-average-pooled to N x N), so its mean
over the grid is the global average pooling the classifier was trained on (exactly so when the grid
is the native map, as for the shipped model: 7 x 7 at 224 px; pooling to a coarser grid of equal
bins keeps the mean). The classifier is one linear layer (1280 x 1000 for EfficientNet-Lite2): it
costs about 0.1 ms a photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from captioner.settings import Settings, setting
from captioner.tags.classes import N_CLASSES, class_words
from captioner.tags.tag import Tag


def pooled_features(grid: torch.Tensor | np.ndarray, channels: int) -> torch.Tensor:
    """(B, N, N, C), (B, N*N, C) or (B, C) encoder features -> (B, C) float32, mean-pooled over the grid;
    a ValueError when C is not `channels` (the heads on pooled features share this)."""
    x = torch.as_tensor(grid).detach().float().cpu()
    if x.dim() == 4:
        x = x.mean(dim=(1, 2))
    elif x.dim() == 3:
        x = x.mean(dim=1)
    if x.dim() != 2 or x.shape[1] != channels:
        raise ValueError(f"expected features with {channels} channels, got {tuple(x.shape)}")
    return x


@dataclass(frozen=True)
class TagConfig(Settings):
    """Which words become tags: each word's probability is the sum of its classes' probabilities."""

    threshold: float = setting(0.2, "a word needs at least this probability", lo=0.0, hi=1.0, cli=False)
    top_k: int = setting(5, "at most this many tags, highest first", lo=0, cli=False)


class ObjectTagger:
    """Maps encoder grids (B, N, N, C) to ImageNet class probabilities and plain-word tags."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, words: list[list[str]] | None = None,
                 config: TagConfig | None = None):
        if weight.shape[0] != N_CLASSES or bias.shape != (N_CLASSES,):
            raise ValueError(f"an ImageNet-1k classifier has {N_CLASSES} outputs, not {tuple(weight.shape)}")
        self.weight = weight.detach().float().cpu().contiguous()
        self.bias = bias.detach().float().cpu().contiguous()
        self.words = words if words is not None else class_words()
        self.config = config or TagConfig()
        vocab = sorted({w for ws in self.words for w in ws})
        self.labels = vocab
        index = {w: i for i, w in enumerate(vocab)}
        # (1000, W): which words each class maps to; word probability = class probabilities summed
        m = torch.zeros(N_CLASSES, len(vocab))
        for c, ws in enumerate(self.words):
            for w in ws:
                m[c, index[w]] = 1.0
        self.class_to_word = m

    @classmethod
    def for_backbone(cls, backbone: str, config: TagConfig | None = None) -> ObjectTagger | None:
        """The tagger of a registered backbone, or None when it has no ImageNet-1k classifier (then
        photos get no tags)."""
        from captioner.model.backbones import get_backbone

        spec = get_backbone(backbone)
        if spec.classifier is None:
            return None
        head = spec.classifier()
        if head is None:
            return None
        return cls(head[0], head[1], config=config)

    @property
    def channels(self) -> int:
        return self.weight.shape[1]

    @torch.inference_mode()
    def class_probabilities(self, grid: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, N, N, C), (B, N*N, C) or (B, C) pooled features -> (B, 1000) softmax probabilities."""
        x = pooled_features(grid, self.channels)
        return torch.softmax(torch.addmm(self.bias, x, self.weight.t()), dim=-1)

    @torch.inference_mode()
    def word_probabilities(self, grid: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, W): each plain word's probability (the sum over the classes that map to it); columns
        follow `self.labels`."""
        return self.class_probabilities(grid) @ self.class_to_word

    def tags_from_word_probabilities(self, word_probs: torch.Tensor, config: TagConfig | None = None) -> list[list[Tag]]:
        config = config or self.config
        out = []
        for row in word_probs:
            k = min(max(config.top_k, 0), row.numel())
            if k == 0:
                out.append([])
                continue
            scores, idx = torch.topk(row, k)
            out.append([Tag(self.labels[i], float(s)) for s, i in zip(scores.tolist(), idx.tolist())
                        if s >= config.threshold])
        return out

    def tags(self, grid: torch.Tensor | np.ndarray, config: TagConfig | None = None) -> list[list[Tag]]:
        """One list of tags per image, most likely first."""
        return self.tags_from_word_probabilities(self.word_probabilities(grid), config)
