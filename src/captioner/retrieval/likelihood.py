"""`Scorer`: the likelihood scorer (`captioner.retrieval.likelihood_scorer`) on torch tensors, from a
`Decoder`: the teacher-forced log-likelihood of a description given photos' encoder grids.

`captioner.retrieval.numpy_likelihood.NumpyScorer` is the same scorer on numpy arrays (no torch), what
`captioner find` runs on by default.
"""
from __future__ import annotations

import numpy as np
import torch

from captioner.model.decoder import Decoder
from captioner.retrieval.likelihood_scorer import LikelihoodScorer, PhotoBatch
from captioner.retrieval.tokens import QueryTokens, query_tokens

__all__ = ["PhotoBatch", "QueryTokens", "Scorer", "query_tokens"]


class Scorer(LikelihoodScorer):
    """The decoder's weights (float32 copies, on its device) laid out for scoring one text against many photos."""

    def __init__(self, decoder: Decoder):
        super().__init__({name: value.detach().to(torch.float32, copy=True)
                          for name, value in decoder.state_dict().items()})

    def _grids(self, grids) -> torch.Tensor:
        """Grids given as numpy arrays or torch tensors (detached: scoring builds no autograd graph)."""
        x = grids.detach() if isinstance(grids, torch.Tensor) else torch.as_tensor(np.asarray(grids))
        return x.to(torch.float32).contiguous()
