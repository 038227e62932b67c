"""`captioner.retrieval.likelihood.Scorer` in numpy: the teacher-forced likelihood of a description given
photos' encoder grids, from a model folder's `decoder.safetensors`, without torch (what `captioner find`
runs on by default). The same operations in the same order, in float32, as the PyTorch scorer (which
tests/test_lean_cli.py compares it with). `PhotoBatch`, what both scorers keep of each photo, lives here.

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from captioner.retrieval.tokens import QueryTokens


@dataclass
class PhotoBatch:
    """What a scorer needs of each photo, computed once: its grid, the attention's projection of it, h0, c0
    (numpy arrays for `NumpyScorer`, torch tensors for `captioner.retrieval.likelihood.Scorer`)."""

    grids: Any       # (n, P, C) float32
    projected: Any   # (n, P, A)
    h0: Any          # (n, H)
    c0: Any

    def __len__(self) -> int:
        return self.grids.shape[0]

    def __getitem__(self, index) -> PhotoBatch:
        return PhotoBatch(self.grids[index], self.projected[index], self.h0[index], self.c0[index])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


class NumpyScorer:
    """The decoder's weights (float32) laid out for scoring one text against many photos."""

    def __init__(self, weights: dict[str, np.ndarray]):
        def w(name):
            return np.asarray(weights[name], dtype=np.float32)

        def t(name):
            return np.ascontiguousarray(w(f"{name}.weight").T), w(f"{name}.bias")

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
        self.lstm_emb_w = np.ascontiguousarray(w_ih[:, :embed_dim].T)
        self.lstm_ctx_w = np.ascontiguousarray(w_ih[:, embed_dim : embed_dim + feature_dim].T)
        self.lstm_h_w = np.ascontiguousarray(w("lstm.weight_hh").T)
        self.lstm_b = w("lstm.bias_ih") + w("lstm.bias_hh")
        self.out_w, self.out_b = t("out")
        self.feature_dim = feature_dim

    @classmethod
    def load(cls, folder: str | Path) -> NumpyScorer:
        """From a model folder's `decoder.safetensors` (float16 or float32), read without torch."""
        from captioner.runtime.external_weights import SafetensorsFile

        f = SafetensorsFile(Path(folder) / "decoder.safetensors")
        return cls({k: f.array(k) for k in f.header})

    # ------------------------------------------------------------------ photos
    def photos(self, grids) -> PhotoBatch:
        """Photos' encoder grids ((n, N*N, C) or (n, N, N, C), any float dtype) ready for scoring."""
        x = np.asarray(grids)
        if x.ndim == 4:
            x = x.reshape(x.shape[0], -1, x.shape[3])
        if x.ndim != 3 or x.shape[2] != self.feature_dim:
            raise ValueError(f"expected grids of shape (n, cells, {self.feature_dim}), got {tuple(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, cells, dim = x.shape
        projected = (x.reshape(n * cells, dim) @ self.feat_w + self.feat_b).reshape(n, cells, -1)  # one 2-D product
        mean = x.mean(axis=1)
        h0 = np.tanh(self.init_h_b + mean @ self.init_h_w)
        c0 = np.tanh(self.init_c_b + mean @ self.init_c_w)
        return PhotoBatch(x, projected, h0, c0)

    # ------------------------------------------------------------------ texts
    def token_logprobs(self, photos: PhotoBatch, query: QueryTokens, prune: tuple[int, int] | None = None,
                       bias: np.ndarray | None = None) -> np.ndarray:
        """log p(token_t | tokens_<t, photo) for every photo and predicted token: (n_photos, len(ids) - 1); with
        `prune=(after, keep)` as `Scorer.token_logprobs` (the dropped photos' later entries are NaN)."""
        ids = np.asarray(query.ids, dtype=np.int64)
        n, steps = len(photos), len(ids) - 1
        emb_part = self.lstm_b + self.embedding[ids[:-1]] @ self.lstm_emb_w  # (T-1, 4H): the same for all photos
        h, c = photos.h0, photos.c0
        out = np.full((n, steps), np.nan, dtype=np.float32)
        active = None  # rows still scored (None: all)
        energy = np.empty_like(photos.projected)
        for t in range(steps):
            if prune is not None and t == prune[0] and t > 0 and prune[1] < len(h):
                mask = np.asarray(query.scored[:t], dtype=np.float32)
                rows = np.arange(n) if active is None else active
                partial = (out[rows, :t] * mask).sum(axis=1) / max(mask.sum(), 1.0)
                if bias is not None:
                    partial = partial + np.asarray(bias, dtype=np.float32)[rows]
                best = np.sort(np.argsort(-partial, kind="stable")[: prune[1]])
                active = rows[best]
                photos, h, c = photos[best], h[best], c[best]
                energy = np.empty_like(photos.projected)
            np.add(photos.projected, (self.hid_b + h @ self.hid_w)[:, None, :], out=energy)
            np.tanh(energy, out=energy)
            e = (energy.reshape(-1, energy.shape[2]) @ self.score_w).reshape(energy.shape[:2])  # (n, P)
            e = np.exp(e - e.max(axis=1, keepdims=True))
            alpha = e / e.sum(axis=1, keepdims=True)
            context = np.einsum("np,npc->nc", alpha, photos.grids)
            context = _sigmoid(self.gate_b + h @ self.gate_w) * context
            gates = emb_part[t] + context @ self.lstm_ctx_w + h @ self.lstm_h_w
            i, f, g, o = np.split(gates, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            logits = self.out_b + h @ self.out_w
            step = logits[:, ids[t + 1]] - _logsumexp(logits)
            if active is None:
                out[:, t] = step
            else:
                out[active, t] = step
        return out

    def text_likelihood(self, photos: PhotoBatch, query: QueryTokens, chunk: int = 1024,
                        prune: tuple[int, int] | None = None, bias=None) -> np.ndarray:
        """Mean log-probability per scored token (known words and `<end>`) of `query` for each photo: (n_photos,);
        with `prune` the photos dropped after the first words get -inf (as `Scorer.text_likelihood`)."""
        mask = np.asarray(query.scored, dtype=np.float32)
        if prune is not None:
            lp = self.token_logprobs(photos, query, prune, bias)
            score = (lp * mask).sum(axis=1) / mask.sum()
            return np.nan_to_num(score, nan=-np.inf).astype(np.float32)
        scores = [(self.token_logprobs(photos[s : s + chunk], query) * mask).sum(axis=1) / mask.sum()
                  for s in range(0, len(photos), chunk)]
        return np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)
