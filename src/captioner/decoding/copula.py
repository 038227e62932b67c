"""No bare noun straight after a copula: "a little girl is bubbles in a green slide", "a dog is kitchen".

What may follow `is` / `are` is learnt from data, not from a hand list: `count_followers` counts, over
training captions, how often each word comes right after a copula (`sitting` 455 times in Flickr8k train,
`in` 317, `a` 150, `rock` 37 for "is rock climbing", `dog` and `kitchen` never). `copula_table.py` holds
those counts for Flickr8k train (written by `scripts/build_copula_table.py`). With
`DecodingConfig.no_bare_noun` n > 0, a word seen after a copula fewer than n times in training is not
emitted right after one (`NoBareNoun`); words the table has never seen (those added at decode time by
`captioner.tags.new_words`, all nouns) count 0.

This module imports neither torch nor onnx: `NoBareNoun` is one processor for both decoding paths
(`captioner.decoding.processors.decoding_rules` with torch tensors, `captioner.runtime.numpy_search.Rules`
with numpy arrays).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: the copulas whose next word is checked
COPULAS = ("is", "are")
#: what `count_followers` counts for a copula at the end of a caption
END = "<end>"


def count_followers(captions: Iterable[Sequence[str]], copulas: Sequence[str] = COPULAS) -> Counter:
    """How often each word follows one of `copulas` in tokenised `captions` (a caption that ends with a
    copula counts for `END`)."""
    out: Counter = Counter()
    cop = set(copulas)
    for toks in captions:
        toks = list(toks)
        for a, b in zip(toks, [*toks[1:], END]):
            if a in cop:
                out[b] += 1
    return out


def shipped_followers() -> dict[str, int]:
    """The Flickr8k train counts (`copula_table.FOLLOWERS`)."""
    from captioner.decoding.copula_table import FOLLOWERS

    return FOLLOWERS


def copula_ban(itos: Sequence[str], min_count: int, followers: Mapping[str, int] | None = None,
               end: str = END) -> tuple[np.ndarray, np.ndarray]:
    """(ids of the copulas, ids of the words banned right after one) for a vocabulary (`itos`, special
    tokens included): the words `followers` (default: the shipped table) saw after a copula fewer than
    `min_count` times. Special tokens other than `end` are left to the other rules; `end` is judged by
    the table's `END` count like a word."""
    followers = shipped_followers() if followers is None else followers
    copulas = [i for i, w in enumerate(itos) if w in COPULAS]
    banned = []
    for i, w in enumerate(itos):
        if w == end:
            if followers.get(END, 0) < min_count:
                banned.append(i)
        elif not (w.startswith("<") and w.endswith(">")) and followers.get(w, 0) < min_count:
            banned.append(i)
    return np.array(copulas, dtype=np.int64), np.array(banned, dtype=np.int64)


class NoBareNoun:
    """Rows whose last word is a copula get -inf on the words `copula_ban` bans. Works on numpy arrays
    (the torch-free path) and on torch tensors (the masks are moved to the tensors' device once)."""

    def __init__(self, itos: Sequence[str], min_count: int, followers: Mapping[str, int] | None = None,
                 end: str = END):
        self.copulas, self.banned = copula_ban(itos, min_count, followers, end)
        self.vocab_size = len(itos)
        self._torch = None  # (copulas, banned) as tensors on the last device seen

    def __call__(self, logp, seqs, step):
        if seqs.shape[1] == 0 or not len(self.copulas) or not len(self.banned):
            return logp
        if isinstance(logp, np.ndarray):
            rows = np.nonzero(np.isin(seqs[:, -1], self.copulas))[0]
            if not len(rows):
                return logp
            out = logp.copy()
            out[np.ix_(rows, self.banned)] = -np.inf
            return out
        import torch

        if self._torch is None or self._torch[0].device != seqs.device:
            self._torch = (torch.from_numpy(self.copulas).to(seqs.device),
                           torch.from_numpy(self.banned).to(seqs.device))
        copulas, banned = self._torch
        hit = torch.isin(seqs[:, -1], copulas)
        if not bool(hit.any()):
            return logp
        rows = hit.nonzero().squeeze(1)
        out = logp.clone()
        out[rows.unsqueeze(1), banned.unsqueeze(0)] = float("-inf")
        return out
