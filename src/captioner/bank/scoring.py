"""Teacher-forced likelihood of many sentences for one photo, batched.

`retrieval.likelihood.Scorer` scores one text against many photos; the bank needs the transpose: one
photo, many texts (its shortlist). It reuses the `Scorer`'s weight layout and computes the same
function: every sentence is a row, the photo's attention projection and grid are shared by all rows
(broadcast, never copied), the words' share of the LSTM input is computed for all rows and steps in one
product, and rows whose sentence has ended leave the batch.
"""
from __future__ import annotations

import numpy as np
import torch

from captioner.retrieval.likelihood import Scorer


class SentenceScorer(Scorer):
    """`Scorer`'s weights plus each vocabulary word's share of the LSTM input (embedding times its input
    weights, plus the LSTM biases), computed once: a row's step then gathers it instead of multiplying."""

    def __init__(self, decoder):
        super().__init__(decoder)
        with torch.inference_mode():
            self.word_gates = torch.addmm(self.lstm_b, self.embedding, self.lstm_emb_w)  # (V, 4H)


@torch.inference_mode()
def sentence_likelihood(scorer: SentenceScorer, grid, tokens, start_id: int = 1, end_id: int = 2,
                        prune: tuple[int, int] | None = None, attention: bool = False):
    """Mean log-probability per token (the words and `<end>`) of each sentence given the photo.

    `grid`: (P, C) or (N, N, C) encoder grid; `tokens`: (R, L) word ids, 0-padded (no `<start>`/`<end>`).
    `prune=(after, keep)`: after `after` words only the `keep` rows with the best mean so far go on; the
    others get -inf. Returns (R,) float32; with `attention`, also each row's attention maps (R, L, P) float32
    (one per word; rows past their length are 0)."""
    x = grid if isinstance(grid, torch.Tensor) else torch.from_numpy(np.array(grid, dtype=np.float32))
    x = x.to(torch.float32)
    x = x.reshape(-1, x.shape[-1])
    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    n_rows = ids.shape[0]
    if n_rows == 0:
        return np.zeros(0, np.float32)
    lengths = (ids != 0).sum(dim=1)
    projected = torch.addmm(scorer.feat_b, x, scorer.feat_w)            # (P, A)
    mean = x.mean(dim=0, keepdim=True)
    h = torch.tanh(torch.addmm(scorer.init_h_b, mean, scorer.init_h_w)).expand(n_rows, -1).contiguous()
    c = torch.tanh(torch.addmm(scorer.init_c_b, mean, scorer.init_c_w)).expand(n_rows, -1).contiguous()
    inputs = torch.cat([torch.full((n_rows, 1), start_id), ids], dim=1)  # (R, L+1): <start> w1 .. wL
    targets = torch.cat([ids, torch.zeros(n_rows, 1, dtype=torch.long)], dim=1)
    targets[torch.arange(n_rows), lengths] = end_id
    total = torch.zeros(n_rows)
    rows = torch.arange(n_rows)       # rows still being scored
    dropped = torch.zeros(n_rows, dtype=torch.bool)
    maps = torch.zeros(n_rows, ids.shape[1], x.shape[0]) if attention else None
    for t in range(int(lengths.max()) + 1):
        if prune is not None and t == prune[0] and 0 < prune[1] < len(rows):
            keep = torch.topk(total[rows] / t, prune[1]).indices.sort().values
            dropped[rows] = True
            dropped[rows[keep]] = False
            rows, h, c = rows[keep], h[keep], c[keep]
        live = lengths[rows] >= t
        if not bool(live.all()):
            rows, h, c = rows[live], h[live], c[live]
        if len(rows) == 0:
            break
        energy = torch.tanh(projected.unsqueeze(0) + torch.addmm(scorer.hid_b, h, scorer.hid_w).unsqueeze(1))
        alpha = torch.softmax(energy.matmul(scorer.score_w), dim=1)       # (r, P)
        context = alpha @ x
        if maps is not None and t < maps.shape[1]:
            maps[rows, t] = alpha
        context = torch.sigmoid(torch.addmm(scorer.gate_b, h, scorer.gate_w)) * context
        gates = scorer.word_gates[inputs[rows, t]].addmm(context, scorer.lstm_ctx_w).addmm_(h, scorer.lstm_h_w)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        logits = torch.addmm(scorer.out_b, h, scorer.out_w)
        step = logits.gather(1, targets[rows, t].unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=1)
        total[rows] += step
    score = total / (lengths + 1).to(torch.float32)
    score[dropped] = -float("inf")
    return (score.numpy(), maps) if attention else score.numpy()
