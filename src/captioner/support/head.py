"""`SupportHead`: how likely a photo's captions name each object concept, from its pooled encoder features.

One logistic regression per concept of `captioner.evaluation.hallucination` (`person`, `dog`, `snow`,
`top` for shirts and jackets, ...) on the mean of the encoder's grid (1280 values for EfficientNet-Lite2),
fitted on Flickr8k train with labels from its captions (`scripts/fit_support_head.py`). It gives evidence
for concepts the ImageNet classifier has no class for (people, clothing, settings) and, more usefully,
evidence *against* them: a kitchen photo scores low on `person`. Stored as `support_head.safetensors`
in the model folder (a (K, C) weight, (K,) bias, the concept names in its metadata); about 0.1 ms a photo.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from captioner.tags.tagger import pooled_features

HEAD_FILE = "support_head.safetensors"


@dataclass
class SupportHead:
    names: list[str]  # the concepts, one per output
    weight: np.ndarray  # (K, C)
    bias: np.ndarray  # (K,)
    about: dict = field(default_factory=dict)

    def __post_init__(self):
        self.weight = np.asarray(self.weight, np.float32)
        self.bias = np.asarray(self.bias, np.float32)
        if self.weight.shape[0] != len(self.names) or self.bias.shape != (len(self.names),):
            raise ValueError(f"a support head needs one weight row and bias per concept ({len(self.names)})")
        self._w = torch.from_numpy(self.weight)
        self._b = torch.from_numpy(self.bias)

    @property
    def channels(self) -> int:
        return self.weight.shape[1]

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        meta = {"names": json.dumps(self.names), "about": json.dumps(self.about)}
        save_file({"weight": self._w.contiguous(), "bias": self._b.contiguous()}, str(Path(folder) / HEAD_FILE), meta)

    @classmethod
    def load(cls, folder: str | Path | None) -> SupportHead | None:
        """The head of a model folder, or None when it has none or it cannot be read (then no support
        evidence: decoding is as without it)."""
        if folder is None or not (Path(folder) / HEAD_FILE).is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(Path(folder) / HEAD_FILE), "pt") as f:
                meta = f.metadata() or {}
                weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
            return cls(list(json.loads(meta["names"])), weight.float().numpy(), bias.float().numpy(),
                       json.loads(meta.get("about", "{}")))
        except (OSError, ValueError, KeyError, TypeError, SafetensorError):
            return None

    @torch.inference_mode()
    def probabilities(self, grid: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, N, N, C), (B, N*N, C) or (B, C) features -> (B, K) presence probabilities."""
        x = pooled_features(grid, self.channels)
        return torch.sigmoid(torch.addmm(self._b, x, self._w.t()))
