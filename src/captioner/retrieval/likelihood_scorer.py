"""Teacher-forced log-likelihood of a description given photos' encoder grids, written once for numpy arrays
and torch tensors (the array operations of `captioner.decoding.arrays`, as the decoding search uses them).

The question "how likely would this captioner be to write this text for this photo" is answered by
running the decoder over the text with teacher forcing (the same `<start> w1 .. wn <end>` tokens and
tokenisation as training) and averaging the log-probabilities of the words and `<end>` (length
normalised). One query is scored against many photos at once: the text is the same for every photo,
so the word embeddings' share of the LSTM input is computed once per step, and everything that
depends on the photo alone (the attention's projection of the grid, the initial state) is prepared
once per photo (`PhotoBatch`) and reused for every query.

Words the vocabulary lacks are fed to the decoder as `<unk>` (as in training) but not scored: they
are reported (`QueryTokens.unknown`) and left to full-text search.

The scorer runs on the kind of array its weights are: `captioner.retrieval.numpy_likelihood.NumpyScorer`
(numpy, from a model folder's `decoder.safetensors`; what `captioner find` runs on by default) and
`captioner.retrieval.likelihood.Scorer` (torch, from a `Decoder`). Importing this module imports neither
torch nor onnx.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from captioner.decoding.arrays import arrays_of
from captioner.retrieval.tokens import QueryTokens


@dataclass
class PhotoBatch:
    """What a scorer needs of each photo, computed once: its grid, the attention's projection of it, h0, c0
    (numpy arrays or torch tensors, as the scorer's weights)."""

    grids: Any       # (n, P, C) float32
    projected: Any   # (n, P, A)
    h0: Any          # (n, H)
    c0: Any

    def __len__(self) -> int:
        return self.grids.shape[0]

    def __getitem__(self, index) -> PhotoBatch:
        return PhotoBatch(self.grids[index], self.projected[index], self.h0[index], self.c0[index])


class LikelihoodScorer:
    """The decoder's weights (float32) laid out for scoring one text against many photos."""

    def __init__(self, weights: Mapping[str, Any]):
        """`weights`: the decoder's parameters under `Decoder.state_dict()`'s names (numpy arrays or torch
        tensors, any float dtype); the scorer keeps float32 copies and runs on their kind of array."""
        xp = self.xp = arrays_of(next(iter(weights.values())))

        def w(name):
            return xp.to_float(weights[name])

        def t(name):
            return xp.contiguous(w(f"{name}.weight").T), w(f"{name}.bias")

        self.feat_w, self.feat_b = t("attention.feature_proj")
        self.hid_w, self.hid_b = t("attention.hidden_proj")
        self.score_w = w("attention.score.weight").reshape(-1)  # its bias cancels in the softmax
        self.gate_w, self.gate_b = t("gate")
        self.init_h_w, self.init_h_b = t("init_h")
        self.init_c_w, self.init_c_b = t("init_c")
        self.embedding = w("embedding.weight")
        embed_dim = self.embedding.shape[1]
        feature_dim = self.init_h_w.shape[0]
        w_ih = w("lstm.weight_ih")
        self.lstm_emb_w = xp.contiguous(w_ih[:, :embed_dim].T)
        self.lstm_ctx_w = xp.contiguous(w_ih[:, embed_dim : embed_dim + feature_dim].T)
        self.lstm_h_w = xp.contiguous(w("lstm.weight_hh").T)
        self.lstm_b = w("lstm.bias_ih") + w("lstm.bias_hh")
        self.out_w, self.out_b = t("out")
        self.feature_dim = feature_dim

    def _grids(self, grids):
        """Encoder grids as this scorer's kind of array, float32, laid out row-major."""
        return np.ascontiguousarray(grids, dtype=np.float32)

    # ------------------------------------------------------------------ photos
    def photos(self, grids) -> PhotoBatch:
        """Photos' encoder grids ((n, N*N, C) or (n, N, N, C), any float dtype) ready for scoring."""
        xp, x = self.xp, self._grids(grids)
        if x.ndim == 4:
            x = x.reshape(x.shape[0], -1, x.shape[3])
        if x.ndim != 3 or x.shape[2] != self.feature_dim:
            raise ValueError(f"expected grids of shape (n, cells, {self.feature_dim}), got {tuple(x.shape)}")
        n, cells, dim = x.shape
        projected = (x.reshape(n * cells, dim) @ self.feat_w + self.feat_b).reshape(n, cells, -1)  # one 2-D product
        mean = x.mean(1)
        h0 = xp.lib.tanh(xp.addmm(self.init_h_b, mean, self.init_h_w))
        c0 = xp.lib.tanh(xp.addmm(self.init_c_b, mean, self.init_c_w))
        return PhotoBatch(x, projected, h0, c0)

    # ------------------------------------------------------------------ texts
    def token_logprobs(self, photos: PhotoBatch, query: QueryTokens, prune: tuple[int, int] | None = None,
                       bias=None):
        """log p(token_t | tokens_<t, photo) for every photo and predicted token: (n_photos, len(ids) - 1).

        `prune=(after, keep)`: after `after` tokens only the `keep` photos with the best mean log-probability
        so far (plus `bias`, e.g. minus the weighted prior) go on; the others' later entries are NaN."""
        xp, like = self.xp, self.lstm_b
        ids = xp.asarray(query.ids, like, "long")
        n, steps, hidden = len(photos), len(ids) - 1, self.lstm_h_w.shape[0]
        if bias is not None:
            bias = xp.from_numpy(np.asarray(bias, dtype=np.float32), like)
        emb_part = xp.addmm(self.lstm_b, self.embedding[ids[:-1]], self.lstm_emb_w)  # (T-1, 4H): the same for all
        h, c = photos.h0, photos.c0
        out = xp.full((n, steps), float("nan"), like)
        active = None  # rows still scored (None: all)
        energy = xp.lib.empty_like(photos.projected)  # reused every step: the attention's largest array
        for t in range(steps):
            if prune is not None and t == prune[0] and t > 0 and prune[1] < len(h):
                mask = xp.asarray(query.scored[:t], like)
                rows = xp.arange(n, like) if active is None else active
                partial = (out[rows, :t] * mask).sum(1) / max(float(mask.sum()), 1.0)
                if bias is not None:
                    partial = partial + bias[rows]
                best = xp.sort(xp.topk(partial[None], prune[1])[1][0])
                active = rows[best]
                photos, h, c = photos[best], h[best], c[best]
                energy = xp.lib.empty_like(photos.projected)
            xp.lib.add(photos.projected, xp.addmm(self.hid_b, h, self.hid_w)[:, None, :], out=energy)
            xp.lib.tanh(energy, out=energy)
            alpha = xp.softmax((energy.reshape(-1, energy.shape[2]) @ self.score_w).reshape(energy.shape[:2]))
            context = xp.sigmoid(xp.addmm(self.gate_b, h, self.gate_w)) * xp.mix(alpha, photos.grids)
            gates = xp.addmm(xp.addmm(emb_part[t], context, self.lstm_ctx_w), h, self.lstm_h_w)
            i, f, g, o = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
            c = xp.sigmoid(f) * c + xp.sigmoid(i) * xp.lib.tanh(g)
            h = xp.sigmoid(o) * xp.lib.tanh(c)
            logits = xp.addmm(self.out_b, h, self.out_w)
            step = logits[:, ids[t + 1]] - xp.logsumexp(logits)
            if active is None:
                out[:, t] = step
            else:
                out[active, t] = step
        return out

    def text_likelihood(self, photos: PhotoBatch, query: QueryTokens, chunk: int = 1024,
                        prune: tuple[int, int] | None = None, bias=None) -> np.ndarray:
        """Mean log-probability per scored token (known words and `<end>`) of `query` for each photo: (n_photos,)
        float32 numpy.

        With `prune=(after, keep)` (see `token_logprobs`; photos in one call, not chunked) the photos dropped
        after `after` tokens get -inf."""
        xp = self.xp
        mask = xp.asarray(query.scored, self.lstm_b)
        if prune is not None:
            score = (self.token_logprobs(photos, query, prune, bias) * mask).sum(1) / mask.sum()
            return xp.to_numpy(xp.lib.nan_to_num(score, nan=-np.inf)).astype(np.float32, copy=False)
        scores = [(self.token_logprobs(photos[s : s + chunk], query) * mask).sum(1) / mask.sum()
                  for s in range(0, len(photos), chunk)]
        return xp.to_numpy(xp.cat(scores)).astype(np.float32, copy=False) if scores else np.zeros(0, np.float32)
