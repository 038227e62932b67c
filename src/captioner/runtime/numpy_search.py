"""Greedy decoding and beam search in numpy over a model folder's ONNX decoder step: captions without
importing torch (the first part of inference without PyTorch).

`NumpyStepDecoder` reads what runs once per image (the attention's image projection, the initial LSTM
state) from `decoder.safetensors` with numpy, and runs each step through the folder's
`decoder_step.onnx` (`captioner.runtime.folder_runtime`). `decode` mirrors
`captioner.decoding.search.decode` (same loop, same rules: banned tokens, no `<end>` first, no repeated
n-gram, no echo; same ordering by `score / length ** length_penalty`), with grounded decoding's steer
(`captioner.runtime.numpy_grounding`). Not yet here: words added at decode time, the support penalty, the
sentence bank and confidence; `supported(cfg)` says whether a `DecodingConfig` needs none of grounding,
penalty or bank.
tests/test_numpy_search.py compares it with the PyTorch path.

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from captioner.runtime.external_weights import SafetensorsFile
from captioner.runtime.folder_runtime import STEP_FILE

NEG_INF = np.float32(-np.inf)


class NumpyStepDecoder:
    """The decoder of a model folder with `decoder_step.onnx`: the `StepDecoder` protocol on numpy arrays."""

    def __init__(self, folder: str | Path, threads: int = 0):
        from captioner.runtime.ort_session import session

        folder = Path(folder)
        weights = SafetensorsFile(folder / "decoder.safetensors")

        def linear(name):
            return (np.ascontiguousarray(weights.array(f"{name}.weight").astype(np.float32).T),
                    weights.array(f"{name}.bias").astype(np.float32))

        self.feat_w, self.feat_b = linear("attention.feature_proj")
        self.h_w, self.h_b = linear("init_h")
        self.c_w, self.c_b = linear("init_c")
        self.vocab_size = weights.header["out.bias"]["shape"][0]
        self.session = session(folder / STEP_FILE, threads)

    def flatten(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float32)
        return f.reshape(f.shape[0], -1, f.shape[-1]) if f.ndim == 4 else f

    def project(self, feats: np.ndarray) -> np.ndarray:
        return feats @ self.feat_w + self.feat_b

    def init_state(self, feats: np.ndarray):
        mean = feats.mean(axis=1)
        return np.tanh(mean @ self.h_w + self.h_b), np.tanh(mean @ self.c_w + self.c_b)

    def step(self, feats, proj, words, h, c):
        return self.session.run(None, {"features": np.ascontiguousarray(feats), "projected": np.ascontiguousarray(proj),
                                       "words": np.asarray(words, dtype=np.int64), "h": h, "c": c})


# ---------------------------------------------------------------------------- the rules (decoding.processors)
class Rules:
    """`captioner.decoding.processors.decoding_rules` on numpy arrays, applied in the same order."""

    def __init__(self, vocab, no_repeat_ngram: int = 0, no_echo: int = 0, no_bare_noun: int = 0,
                 no_bare_subject: float = 0.0):
        self.banned = np.array([vocab.pad_id, vocab.start_id, vocab.unk_id])
        self.end_id, self.n, self.echo = vocab.end_id, no_repeat_ngram, bool(no_echo)
        self.joins = np.array([vocab.stoi[w] for w in ("and", "or") if w in vocab.stoi], dtype=np.int64)
        from captioner.decoding.copula import NoBareNoun  # torch-free, the same rule as the PyTorch path's

        self.copula = NoBareNoun(vocab.itos, no_bare_noun, min_share=no_bare_subject) \
            if no_bare_noun > 0 or no_bare_subject > 0 else None

    def __call__(self, logp: np.ndarray, seqs: np.ndarray, step: int) -> np.ndarray:
        logp = logp.copy()
        logp[:, self.banned] = NEG_INF
        if step == 0:
            logp[:, self.end_id] = NEG_INF
        R, L = seqs.shape
        if self.n > 0 and L >= self.n:
            n = self.n
            windows = np.lib.stride_tricks.sliding_window_view(seqs, n - 1, axis=1) if n > 1 \
                else np.zeros((R, L + 1, 0), dtype=seqs.dtype)
            match = (windows[:, :-1] == windows[:, -1:]).all(2)  # (R, L-n+1)
            followers = seqs[:, n - 1:]
            rows, cols = np.nonzero(match)
            ban = np.zeros(logp.shape, dtype=bool)
            ban[rows, followers[rows, cols]] = True
            ban[:, self.end_id] = False
            logp[ban] = NEG_INF
        if self.echo and L:
            rows = np.arange(R)
            last = seqs[:, -1]
            keep = last == self.end_id
            logp[rows[~keep], last[~keep]] = NEG_INF
            if L >= 2 and len(self.joins):
                joined = np.isin(last, self.joins)
                logp[rows[joined], seqs[joined, -2]] = NEG_INF
        if self.copula is not None:
            logp = self.copula(logp, seqs, step)
        return logp


def rank_key(score: float, n_tokens: int, length_penalty: float) -> float:
    return score / (max(n_tokens, 1) ** length_penalty)


def supported(cfg) -> bool:
    """Whether `cfg` needs only plain decoding (what this module does)."""
    return (getattr(cfg, "tag_bonus", 0) <= 0 and getattr(cfg, "support_penalty", 0) <= 0
            and getattr(cfg, "bank_shortlist", 0) <= 0)


def _candidate(vocab, ids: list[int], score: float, alpha: np.ndarray, ended: bool, grid: int):
    from captioner.decoding.candidate import Candidate

    n_words = len(ids) - 1 if ended else len(ids)
    return Candidate(vocab.decode(ids), ids, float(score), alpha[:n_words].reshape(n_words, grid, grid))


# ---------------------------------------------------------------------------- searches (decoding.search)
def greedy_decode(decoder: NumpyStepDecoder, features: np.ndarray, vocab, cfg, steer=None) -> list:
    feats = decoder.flatten(features)
    proj, grid = decoder.project(feats), int(round(feats.shape[1] ** 0.5))
    B = feats.shape[0]
    h, c = decoder.init_state(feats)
    words = np.full(B, vocab.start_id, dtype=np.int64)
    rules = Rules(vocab, cfg.no_repeat_ngram, cfg.no_echo, getattr(cfg, "no_bare_noun", 0),
                  getattr(cfg, "no_bare_subject", 0.0))
    seqs = np.zeros((B, 0), dtype=np.int64)
    scores, alphas = np.zeros(B, dtype=np.float32), []
    done = np.zeros(B, dtype=bool)
    for t in range(cfg.max_len):
        logp, h, c, alpha = decoder.step(feats, proj, words, h, c)
        logp = rules(logp, seqs, t)
        words = (logp if steer is None else steer(logp, seqs, t, np.arange(B))).argmax(axis=1)
        best = logp[np.arange(B), words]
        scores += np.where(done, np.float32(0), best)
        seqs = np.concatenate([seqs, words[:, None]], axis=1)
        alphas.append(alpha)
        done |= words == vocab.end_id
        if done.all():
            break
    alpha_t = np.stack(alphas, 1)
    out = []
    for b in range(B):
        seq = seqs[b].tolist()
        n = seq.index(vocab.end_id) + 1 if vocab.end_id in seq else len(seq)
        out.append(_candidate(vocab, seq[:n], scores[b], alpha_t[b], seq[n - 1] == vocab.end_id, grid))
    return out


def beam_search(decoder: NumpyStepDecoder, features: np.ndarray, vocab, cfg, steer=None) -> list[list]:
    feats = decoder.flatten(features)
    proj, grid = decoder.project(feats), int(round(feats.shape[1] ** 0.5))
    B, P, _ = feats.shape
    k, max_len = cfg.beam_size, cfg.max_len
    rules = Rules(vocab, cfg.no_repeat_ngram, cfg.no_echo, getattr(cfg, "no_bare_noun", 0),
                  getattr(cfg, "no_bare_subject", 0.0))
    V = decoder.vocab_size
    h, c = decoder.init_state(feats)
    img_of = np.arange(B)
    scores = np.zeros(B, dtype=np.float32)
    model_scores = scores.copy() if steer is not None else None  # the model's own log-probs (steered search)
    ranked: dict[int, float] = {}  # id(candidate) -> steered score (steered search only)
    seqs = np.zeros((B, 0), dtype=np.int64)
    alphas = np.zeros((B, 0, P), dtype=np.float32)
    words = np.full(B, vocab.start_id, dtype=np.int64)
    finished: list[list] = [[] for _ in range(B)]
    slots = [k] * B
    rows_of = None
    for t in range(max_len):
        if rows_of is None or not np.array_equal(rows_of, img_of):
            row_feats, row_proj, rows_of = feats[img_of], proj[img_of], img_of
        logp, h, c, alpha = decoder.step(row_feats, row_proj, words, h, c)
        logp = rules(logp, seqs, t)
        model_logp = logp
        if steer is not None:
            logp = steer(logp, seqs, t, img_of)
        total = scores[:, None] + logp
        R = total.shape[0]
        counts = np.bincount(img_of, minlength=B)
        starts = np.cumsum(counts) - counts
        rank = np.arange(R) - starts[img_of]
        width = int(counts.max())
        grid_scores = np.full((B, width, V), NEG_INF, dtype=np.float32)
        grid_scores[img_of, rank] = total
        flat = grid_scores.reshape(B, -1)
        top_idx = np.argsort(-flat, axis=1, kind="stable")[:, : min(k, width * V)]
        top_scores = np.take_along_axis(flat, top_idx, axis=1)
        src_rank, next_word = top_idx // V, top_idx % V
        new_rows, new_words, new_scores, new_img = [], [], [], []
        for b in range(B):
            need = slots[b]
            for j in range(top_idx.shape[1]):
                if need == 0:
                    break
                s = float(top_scores[b, j])
                if s == float("-inf"):
                    break
                row = int(starts[b] + src_rank[b, j])
                w = int(next_word[b, j])
                if w == vocab.end_id or t == max_len - 1:
                    ids = [*seqs[row].tolist(), w]
                    al = np.concatenate([alphas[row], alpha[row: row + 1]])
                    own = s if steer is None else float(model_scores[row] + model_logp[row, w])
                    cand = _candidate(vocab, ids, own, al, w == vocab.end_id, grid)
                    finished[b].append(cand)
                    if steer is not None:
                        ranked[id(cand)] = s
                    slots[b] -= 1
                else:
                    new_rows.append(row)
                    new_words.append(w)
                    new_scores.append(s)
                    new_img.append(b)
                need -= 1
        if not new_rows:
            break
        rows = np.array(new_rows)
        words = np.array(new_words, dtype=np.int64)
        if steer is not None:
            model_scores = model_scores[rows] + model_logp[rows, words]
        scores = np.array(new_scores, dtype=np.float32)
        img_of = np.array(new_img)
        seqs = np.concatenate([seqs[rows], words[:, None]], axis=1)
        alphas = np.concatenate([alphas[rows], alpha[rows][:, None]], axis=1)
        h, c = h[rows], c[rows]
    def order(cd) -> float:  # the model's ranking, plus the tag bonus the caption collected
        return rank_key(cd.score, len(cd.ids), cfg.length_penalty) + (ranked[id(cd)] - cd.score if ranked else 0.0)

    return [sorted(f, key=order, reverse=True) for f in finished]


def decode(decoder: NumpyStepDecoder, features: np.ndarray, vocab, cfg, steer=None) -> list[list]:
    """Candidates for each image, best first; `steer`: grounded decoding's bonus
    (`captioner.runtime.numpy_grounding`). Only the search: grounding, the support penalty and the sentence
    bank are the caller's (`supported` says whether a config needs none of them)."""
    if cfg.beam_size <= 1:
        return [[c] for c in greedy_decode(decoder, features, vocab, cfg, steer)]
    return beam_search(decoder, features, vocab, cfg, steer)
