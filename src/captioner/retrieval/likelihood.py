"""Teacher-forced log-likelihood of a description given photos' encoder grids.

The question "how likely would this captioner be to write this text for this photo" is answered by
running the decoder over the text with teacher forcing (the same `<start> w1 .. wn <end>` tokens and
tokenisation as training) and averaging the log-probabilities of the words and `<end>` (length
normalised). One query is scored against many photos at once: the text is the same for every photo,
so the word embeddings' share of the LSTM input is computed once per step, and everything that
depends on the photo alone (the attention's projection of the grid, the initial state, the
context's LSTM weights) is prepared once per photo (`PhotoBatch`) and reused for every query.

Words the vocabulary lacks are fed to the decoder as `<unk>` (as in training) but not scored: they
are reported (`QueryTokens.unknown`) and left to full-text search.

`captioner.retrieval.numpy_likelihood.NumpyScorer` is the same scorer in numpy (no torch), what `captioner find`
runs on by default.
"""
from __future__ import annotations

import numpy as np
import torch

from captioner.model.decoder import Decoder
from captioner.retrieval.numpy_likelihood import PhotoBatch
from captioner.retrieval.tokens import QueryTokens, query_tokens

__all__ = ["PhotoBatch", "QueryTokens", "Scorer", "query_tokens"]


class Scorer:
    """The decoder's weights laid out for scoring one text against many photos (float32, eval mode)."""

    def __init__(self, decoder: Decoder):
        d = decoder
        f32 = torch.float32

        def t(linear):
            return linear.weight.detach().to(f32).t().contiguous(), linear.bias.detach().to(f32).clone()

        att = d.attention
        self.feat_w, self.feat_b = t(att.feature_proj)
        self.hid_w, self.hid_b = t(att.hidden_proj)
        self.score_w = att.score.weight.detach().to(f32).reshape(-1).clone()  # its bias cancels in the softmax
        self.gate_w, self.gate_b = t(d.gate)
        self.init_h_w, self.init_h_b = t(d.init_h)
        self.init_c_w, self.init_c_b = t(d.init_c)
        embed_dim = d.embedding.weight.shape[1]
        feature_dim = d.init_h.weight.shape[1]
        w_ih = d.lstm.weight_ih.detach().to(f32)
        self.lstm_emb_w = w_ih[:, :embed_dim].t().contiguous()
        self.lstm_ctx_w = w_ih[:, embed_dim : embed_dim + feature_dim].t().contiguous()
        self.lstm_h_w = d.lstm.weight_hh.detach().to(f32).t().contiguous()
        self.lstm_b = (d.lstm.bias_ih + d.lstm.bias_hh).detach().to(f32)
        self.embedding = d.embedding.weight.detach().to(f32)
        self.out_w, self.out_b = t(d.out)
        self.feature_dim = feature_dim

    # ------------------------------------------------------------------ photos
    @torch.inference_mode()
    def photos(self, grids) -> PhotoBatch:
        """Photos' encoder grids ((n, N*N, C) or (n, N, N, C), any float dtype, numpy or torch) ready for scoring."""
        x = torch.as_tensor(np.asarray(grids) if not isinstance(grids, torch.Tensor) else grids)
        if x.dim() == 4:
            x = x.flatten(1, 2)
        if x.dim() != 3 or x.shape[2] != self.feature_dim:
            raise ValueError(f"expected grids of shape (n, cells, {self.feature_dim}), got {tuple(x.shape)}")
        x = x.to(torch.float32).contiguous()
        projected = torch.matmul(x, self.feat_w) + self.feat_b
        mean = x.mean(dim=1)
        h0 = torch.tanh(torch.addmm(self.init_h_b, mean, self.init_h_w))
        c0 = torch.tanh(torch.addmm(self.init_c_b, mean, self.init_c_w))
        return PhotoBatch(x, projected, h0, c0)

    # ------------------------------------------------------------------ texts
    @torch.inference_mode()
    def token_logprobs(self, photos: PhotoBatch, query: QueryTokens, prune: tuple[int, int] | None = None,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
        """log p(token_t | tokens_<t, photo) for every photo and predicted token: (n_photos, len(ids) - 1).

        `prune=(after, keep)`: after `after` tokens only the `keep` photos with the best mean log-probability
        so far (plus `bias`, e.g. minus the weighted prior) go on; the others' later entries are NaN."""
        ids = torch.tensor(query.ids)
        n, steps = len(photos), len(ids) - 1
        emb_part = torch.addmm(self.lstm_b, self.embedding[ids[:-1]], self.lstm_emb_w)  # (T-1, 4H): same for all
        h, c = photos.h0, photos.c0
        out = torch.full((n, steps), float("nan"))
        active = None  # rows still scored (None: all)
        energy = torch.empty_like(photos.projected)  # reused every step: the attention's largest tensor
        for t in range(steps):
            if prune is not None and t == prune[0] and t > 0 and prune[1] < len(h):
                mask = torch.tensor(query.scored[:t], dtype=torch.float32)
                rows = torch.arange(n) if active is None else active
                partial = (out[rows, :t] * mask).sum(dim=1) / mask.sum().clamp(min=1)
                if bias is not None:
                    partial = partial + bias[rows]
                best = torch.topk(partial, prune[1]).indices.sort().values
                active = rows[best]
                photos, h, c = photos[best], h[best], c[best]
                energy = torch.empty_like(photos.projected)
            torch.add(photos.projected, torch.addmm(self.hid_b, h, self.hid_w).unsqueeze(1), out=energy)
            alpha = torch.softmax(energy.tanh_().matmul(self.score_w), dim=1)
            context = torch.bmm(alpha.unsqueeze(1), photos.grids).squeeze(1)
            context = torch.sigmoid(torch.addmm(self.gate_b, h, self.gate_w)) * context
            gates = torch.addmm(emb_part[t], context, self.lstm_ctx_w).addmm_(h, self.lstm_h_w)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            logits = torch.addmm(self.out_b, h, self.out_w)
            step = logits[:, ids[t + 1]] - torch.logsumexp(logits, dim=1)
            if active is None:
                out[:, t] = step
            else:
                out[active, t] = step
        return out

    def text_likelihood(self, photos: PhotoBatch, query: QueryTokens, chunk: int = 1024,
                        prune: tuple[int, int] | None = None, bias=None) -> np.ndarray:
        """Mean log-probability per scored token (known words and `<end>`) of `query` for each photo: (n_photos,).

        With `prune=(after, keep)` (see `token_logprobs`; photos in one call, not chunked) the photos dropped
        after `after` tokens get -inf."""
        mask = torch.tensor(query.scored, dtype=torch.float32)
        if prune is not None:
            bias = None if bias is None else torch.as_tensor(np.asarray(bias, dtype=np.float32))
            lp = self.token_logprobs(photos, query, prune, bias)
            score = (lp * mask).sum(dim=1) / mask.sum()
            return torch.nan_to_num(score, nan=-np.inf).numpy()
        scores = []
        for s in range(0, len(photos), chunk):
            lp = self.token_logprobs(photos[s : s + chunk], query)
            scores.append((lp * mask).sum(dim=1) / mask.sum())
        return torch.cat(scores).numpy() if scores else np.zeros(0, np.float32)
