"""`NumpyScorer`: the likelihood scorer (`captioner.retrieval.likelihood_scorer`) on numpy arrays, from a model
folder's `decoder.safetensors`, without torch (what `captioner find` runs on by default). The same operations
in the same order, in float32, as the PyTorch `captioner.retrieval.likelihood.Scorer` (which
tests/test_lean_cli.py compares it with).

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

from pathlib import Path

from captioner.retrieval.likelihood_scorer import LikelihoodScorer, PhotoBatch

__all__ = ["NumpyScorer", "PhotoBatch"]


class NumpyScorer(LikelihoodScorer):
    """The decoder's weights as float32 numpy arrays, laid out for scoring one text against many photos."""

    @classmethod
    def load(cls, folder: str | Path) -> NumpyScorer:
        """From a model folder's `decoder.safetensors` (float16 or float32), read without torch."""
        from captioner.runtime.external_weights import SafetensorsFile

        f = SafetensorsFile(Path(folder) / "decoder.safetensors")
        return cls({k: f.array(k) for k in f.header})
