"""Teacher-forced likelihood of many sentences for one photo, batched.

`captioner.retrieval.likelihood_scorer.LikelihoodScorer` scores one text against many photos; the bank needs the
transpose: one photo, many texts (its shortlist). It reuses the scorer's weight layout and computes the same
function: every sentence is a row, the photo's attention projection and grid are shared by all rows
(broadcast, never copied), the words' share of the LSTM input is computed for all rows and steps in one
product, and rows whose sentence has ended leave the batch.

Written once over the array operations of `captioner.decoding.arrays`, it runs on the scorer's kind of array:
torch tensors for `SentenceScorer` (a `captioner.retrieval.likelihood.Scorer` of a `Decoder`, the PyTorch path)
and numpy arrays for `captioner.retrieval.numpy_likelihood.NumpyScorer` (the torch-free path,
`captioner.runtime.lean`). Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import contextlib

import numpy as np


def SentenceScorer(decoder):  # noqa: N802 - made like a class, as it always was
    """The PyTorch scorer of a `Decoder` (`captioner.retrieval.likelihood.Scorer`) with each vocabulary word's
    share of the LSTM input (`word_gates`) computed once."""
    from captioner.retrieval.likelihood import Scorer

    scorer = Scorer(decoder)
    word_gates(scorer)
    return scorer


def word_gates(scorer):
    """(V, 4H): each vocabulary word's share of the LSTM input (embedding times its input weights, plus the LSTM
    biases), computed once per scorer: a row's step then gathers it instead of multiplying."""
    gates = getattr(scorer, "word_gates", None)
    if gates is None:
        gates = scorer.word_gates = scorer.xp.addmm(scorer.lstm_b, scorer.embedding, scorer.lstm_emb_w)
    return gates


def inference(xp):
    """A context in which `xp`'s arrays keep no autograd history: torch's inference mode, nothing for numpy."""
    if xp.lib is np:
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


def sentence_likelihood(scorer, grid, tokens, start_id: int = 1, end_id: int = 2,
                        prune: tuple[int, int] | None = None, attention: bool = False):
    """Mean log-probability per token (the words and `<end>`) of each sentence given the photo.

    `scorer`: a `LikelihoodScorer` (torch or numpy); `grid`: (P, C) or (N, N, C) encoder grid; `tokens`: (R, L)
    word ids, 0-padded (no `<start>`/`<end>`). `prune=(after, keep)`: after `after` words only the `keep` rows
    with the best mean so far go on; the others get -inf. Returns (R,) float32 numpy; with `attention`, also each
    row's attention maps (R, L, P) float32 in the scorer's kind of array (one per word; rows past their length
    are 0)."""
    with inference(scorer.xp):
        return _likelihood(scorer, grid, tokens, start_id, end_id, prune, attention)


def _likelihood(scorer, grid, tokens, start_id, end_id, prune, attention):
    xp, like = scorer.xp, scorer.lstm_b
    x = scorer._grids(grid)
    x = x.reshape(-1, x.shape[-1])
    ids = xp.asarray(np.asarray(tokens, dtype=np.int64), like, "long")
    n_rows = ids.shape[0]
    if n_rows == 0:
        return np.zeros(0, np.float32)
    gates_of_word = word_gates(scorer)
    lengths = (ids != 0).sum(1)
    projected = xp.addmm(scorer.feat_b, x, scorer.feat_w)            # (P, A)
    mean = x.mean(0)[None]
    first = xp.full((n_rows,), 0, like, "long")
    h = xp.lib.tanh(xp.addmm(scorer.init_h_b, mean, scorer.init_h_w))[first]
    c = xp.lib.tanh(xp.addmm(scorer.init_c_b, mean, scorer.init_c_w))[first]
    inputs = xp.cat([xp.full((n_rows, 1), start_id, like, "long"), ids], 1)  # (R, L+1): <start> w1 .. wL
    targets = xp.cat([ids, xp.full((n_rows, 1), 0, like, "long")], 1)
    targets[xp.arange(n_rows, like), lengths] = end_id
    total = xp.full((n_rows,), 0, like, "float")
    rows = xp.arange(n_rows, like)       # rows still being scored
    dropped = xp.full((n_rows,), False, like, "bool")
    maps = xp.full((n_rows, ids.shape[1], x.shape[0]), 0, like, "float") if attention else None
    hidden = scorer.lstm_h_w.shape[0]
    for t in range(int(lengths.max()) + 1):
        if prune is not None and t == prune[0] and 0 < prune[1] < len(rows):
            keep = xp.sort(xp.topk((total[rows] / t)[None], prune[1])[1][0])
            dropped[rows] = True
            dropped[rows[keep]] = False
            rows, h, c = rows[keep], h[keep], c[keep]
        live = lengths[rows] >= t
        if not bool(live.all()):
            rows, h, c = rows[live], h[live], c[live]
        if len(rows) == 0:
            break
        energy = xp.lib.tanh(projected[None] + xp.addmm(scorer.hid_b, h, scorer.hid_w)[:, None])
        alpha = xp.softmax(energy @ scorer.score_w)       # (r, P)
        context = alpha @ x
        if maps is not None and t < maps.shape[1]:
            maps[rows, t] = alpha
        context = xp.sigmoid(xp.addmm(scorer.gate_b, h, scorer.gate_w)) * context
        gates = xp.addmm(xp.addmm(gates_of_word[inputs[rows, t]], context, scorer.lstm_ctx_w), h, scorer.lstm_h_w)
        i, f, g, o = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c = xp.sigmoid(f) * c + xp.sigmoid(i) * xp.lib.tanh(g)
        h = xp.sigmoid(o) * xp.lib.tanh(c)
        logits = xp.addmm(scorer.out_b, h, scorer.out_w)
        step = logits[xp.arange(len(rows), like), targets[rows, t]] - xp.logsumexp(logits)
        total[rows] += step
    score = total / xp.to_float(lengths + 1)
    score[dropped] = -float("inf")
    score = xp.to_numpy(score).astype(np.float32, copy=False)
    return (score, maps) if attention else score
