"""No bare noun straight after a copula: "a little girl is bubbles in a green slide", "a dog is kitchen".

What may follow `is` / `are` is learnt from data, not from a hand list: `count_followers` counts, over
training captions, how often each word comes right after a copula (`sitting` 455 times in Flickr8k train,
`in` 317, `a` 150, `rock` 37 for "is rock climbing", `dog` and `kitchen` never). `copula_table.json` holds
those counts for Flickr8k train (written by `scripts/build_copula_table.py`). With
`DecodingConfig.no_bare_noun` n > 0, a word seen after a copula fewer than n times in training is not
emitted right after one (`NoBareNoun`); words the table has never seen (those added at decode time by
`captioner.tags.new_words`, all nouns) count 0. The mirror rule, `DecodingConfig.no_bare_subject` s > 0: no
copula right after a word found right before one in less than a share s of its uses in training ("a little brown
is jumping", "a black and white are": what is left when a search lowers the noun a caption was heading for);
`subject_shares` gives the shares (`dog` 0.23, `man` 0.09, `black` 0.017, `a` 0); words used fewer than
`MIN_USES` times and words the table has never seen are not judged.

This module imports neither torch nor onnx: `NoBareNoun` is one processor for both decoding paths
(`captioner.decoding.processors.decoding_rules` with torch tensors, `captioner.runtime.numpy_search.Rules`
with numpy arrays).
"""
from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: the shipped Flickr8k train counts and shares, package data beside this module
TABLE_FILE = "copula_table.json"

#: the copulas whose next word is checked
COPULAS = ("is", "are")
#: what `count_followers` counts for a copula at the end of a caption
END = "<end>"
#: `subject_shares` judges only words used at least this often (rarer and unseen words are never judged)
MIN_USES = 50


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


def subject_shares(captions: Iterable[Sequence[str]], copulas: Sequence[str] = COPULAS,
                   min_uses: int | None = None) -> dict[str, float]:
    """For each word used at least `min_uses` times (default `MIN_USES`), the share of its uses that come right
    before one of `copulas` (`dog` 0.23, `man` 0.09, `black` 0.017, `a` 0)."""
    min_uses = MIN_USES if min_uses is None else min_uses
    before: Counter = Counter()
    uses: Counter = Counter()
    cop = set(copulas)
    for toks in captions:
        toks = list(toks)
        uses.update(toks)
        for a, b in zip(toks, toks[1:]):
            if b in cop:
                before[a] += 1
    return {w: round(before[w] / n, 4) for w, n in uses.items() if n >= min_uses}


@functools.lru_cache(maxsize=1)
def _shipped_table() -> dict:
    import json
    from importlib import resources

    return json.loads(resources.files("captioner.decoding").joinpath(TABLE_FILE).read_text(encoding="utf-8"))


def shipped_followers() -> dict[str, int]:
    """The Flickr8k train counts (`copula_table.json`'s `followers`)."""
    return _shipped_table()["followers"]


def shipped_subject_shares() -> dict[str, float]:
    """The Flickr8k train shares (`copula_table.json`'s `subject_shares`)."""
    return _shipped_table()["subject_shares"]


def subject_ban(itos: Sequence[str], min_share: float, shares: Mapping[str, float] | None = None) -> np.ndarray:
    """Ids of the words after which no copula may come: those `shares` (default: the shipped table) judged and
    found right before a copula in less than `min_share` of their uses ("a brown is", "a black and white are")."""
    shares = shipped_subject_shares() if shares is None else shares
    if min_share <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.array([i for i, w in enumerate(itos) if w in shares and shares[w] < min_share], dtype=np.int64)


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


def _ban_after(logp, seqs, after: np.ndarray, banned: np.ndarray, cache: dict):
    """-inf on the `banned` columns of the rows whose last word is in `after`; numpy arrays or torch tensors."""
    if seqs.shape[1] == 0 or not len(after) or not len(banned):
        return logp
    if isinstance(logp, np.ndarray):
        rows = np.nonzero(np.isin(seqs[:, -1], after))[0]
        if not len(rows):
            return logp
        out = logp.copy()
        out[np.ix_(rows, banned)] = -np.inf
        return out
    import torch

    key = (id(after), seqs.device)
    if key not in cache:  # the id arrays as tensors, once per device
        cache[key] = (torch.from_numpy(after).to(seqs.device), torch.from_numpy(banned).to(seqs.device))
    after_t, banned_t = cache[key]
    hit = torch.isin(seqs[:, -1], after_t)
    if not bool(hit.any()):
        return logp
    rows = hit.nonzero().squeeze(1)
    out = logp.clone()
    out[rows.unsqueeze(1), banned_t.unsqueeze(0)] = float("-inf")
    return out


@functools.lru_cache(maxsize=8)
def _rule(itos: tuple[str, ...], min_count: int, min_share: float) -> NoBareNoun:
    return NoBareNoun(itos, min_count, min_share=min_share)


def no_bare_noun_rule(itos: Sequence[str], min_count: int, min_share: float = 0.0) -> NoBareNoun:
    """The `NoBareNoun` rule for a vocabulary and setting, built once (building it reads every word: about 2 ms
    a caption when it was built for each one)."""
    return _rule(tuple(itos), int(min_count), float(min_share))


class NoBareNoun:
    """Rows whose last word is a copula get -inf on the words `copula_ban` bans (`min_count` > 0); with
    `min_share` > 0, rows whose last word `subject_ban` names get -inf on the copulas. Works on numpy arrays
    (the torch-free path) and on torch tensors (the id arrays are moved to the tensors' device once)."""

    def __init__(self, itos: Sequence[str], min_count: int, followers: Mapping[str, int] | None = None,
                 end: str = END, min_share: float = 0.0, shares: Mapping[str, float] | None = None):
        self.copulas, self.banned = copula_ban(itos, min_count, followers, end) if min_count > 0 else \
            (np.array([i for i, w in enumerate(itos) if w in COPULAS], dtype=np.int64), np.zeros(0, dtype=np.int64))
        self.subjects = subject_ban(itos, min_share, shares)
        self.vocab_size = len(itos)
        self._cache: dict = {}

    def __call__(self, logp, seqs, step):
        logp = _ban_after(logp, seqs, self.copulas, self.banned, self._cache)
        return _ban_after(logp, seqs, self.subjects, self.copulas, self._cache)
