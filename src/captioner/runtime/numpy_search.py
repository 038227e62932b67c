"""Greedy decoding and beam search in numpy over a model folder's ONNX decoder step: captions without
importing torch (the first part of inference without PyTorch).

`NumpyStepDecoder` reads what runs once per image (the attention's image projection, the initial LSTM
state) from `decoder.safetensors` with numpy, and runs each step through the folder's
`decoder_step.onnx` (`captioner.runtime.folder_runtime`). `decode` runs the search loops the PyTorch path
runs (`captioner.decoding.beams`, on numpy arrays) with `Rules`, the numpy twin of
`captioner.decoding.processors.decoding_rules` (banned tokens, no `<end>` first, no repeated n-gram, no
echo), and grounded decoding's steer (`captioner.runtime.numpy_grounding`). Not here: the sentence bank;
`supported(cfg)` says whether a `DecodingConfig` needs none of grounding, penalty or bank.
tests/test_numpy_search.py compares it with the PyTorch path.

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from captioner.decoding import beams
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
        from captioner.decoding.copula import no_bare_noun_rule  # torch-free, the PyTorch path's rule

        self.copula = no_bare_noun_rule(vocab.itos, no_bare_noun, no_bare_subject) \
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


def supported(cfg) -> bool:
    """Whether `cfg` needs only plain decoding (what this module does)."""
    return (getattr(cfg, "tag_bonus", 0) <= 0 and getattr(cfg, "support_penalty", 0) <= 0
            and getattr(cfg, "bank_shortlist", 0) <= 0)


# ---------------------------------------------------------------------------- searches (decoding.beams)
def decode(decoder: NumpyStepDecoder, features: np.ndarray, vocab, cfg, steer=None) -> list[list]:
    """Candidates for each image, best first (`captioner.decoding.beams.decode` with `Rules`); `steer`:
    grounded decoding's bonus (`captioner.runtime.numpy_grounding`). Only the search: grounding, the support
    penalty and the sentence bank are the caller's (`supported` says whether a config needs none of them)."""
    rules = Rules(vocab, cfg.no_repeat_ngram, cfg.no_echo, getattr(cfg, "no_bare_noun", 0),
                  getattr(cfg, "no_bare_subject", 0.0))
    return beams.decode(decoder, features, vocab, cfg, rules, steer)
