"""The decoding rules, written once as logit processors and used by every way of decoding
(greedy, beam search, SCST sampling, anything added later).

A processor takes the log-probabilities of the next word for each row (R, V), the words each row has
emitted so far (R, t) and the step t, and returns the log-probabilities with forbidden words set to
-inf. `decoding_rules` gives the standard list for a vocabulary and a `DecodingConfig`:

- `<pad>`, `<start>` and `<unk>` are never emitted (`BanTokens`);
- `<end>` is not the first word (`NoEndFirst`);
- with `no_repeat_ngram` n > 0, no n-gram appears twice in a caption (`NoRepeatNgram`);
- with `no_echo`, no word right after itself ("a kitchen kitchen") and none on both sides of `and` /
  `or` ("a white and white dog") (`NoEcho`);
- with `no_bare_noun` n > 0, no word seen after `is` / `are` fewer than n times in training right after
  one ("a girl is bubbles") (`captioner.decoding.copula.NoBareNoun`).

`TagBonus` and `SideBySide` (grounded decoding, `DecodingConfig.tag_bonus`) are not rules but a steer,
applied by the searches after the rules; they live in the torch-free
`captioner.decoding.steer`, shared with the numpy path, and are re-exported here.
"""
from __future__ import annotations

from typing import Protocol

import torch

from captioner.decoding.steer import SideBySide, TagBonus
from captioner.model.vocab import Vocab

__all__ = ["BanTokens", "LogitProcessor", "NoEcho", "NoEndFirst", "NoRepeatNgram", "SideBySide", "TagBonus",
           "apply_rules", "decoding_rules", "repeat_ban"]


class LogitProcessor(Protocol):
    def __call__(self, logp: torch.Tensor, seqs: torch.Tensor, step: int) -> torch.Tensor: ...


class BanTokens:
    """These word ids are never emitted."""

    def __init__(self, ids: list[int], vocab_size: int):
        self.mask = torch.zeros(vocab_size, dtype=torch.bool)
        self.mask[ids] = True

    def __call__(self, logp, seqs, step):
        if self.mask.device != logp.device:
            self.mask = self.mask.to(logp.device)
        return logp.masked_fill(self.mask, float("-inf"))


class NoEndFirst:
    """A caption has at least one word: `<end>` is forbidden at step 0."""

    def __init__(self, end_id: int):
        self.end_id = end_id

    def __call__(self, logp, seqs, step):
        if step == 0:
            logp = logp.clone()
            logp[:, self.end_id] = float("-inf")
        return logp


def repeat_ban(seqs: torch.Tensor, n: int, vocab_size: int, end_id: int) -> torch.Tensor | None:
    """(R, V) mask of the words that would complete an n-gram already in each row of `seqs`
    (R, L), or None when none can (n <= 0 or rows shorter than n)."""
    R, L = seqs.shape
    if n <= 0 or L < n:
        return None
    windows = seqs.unfold(1, n - 1, 1) if n > 1 else seqs.new_zeros(R, L + 1, 0)  # (R, L-n+2, n-1)
    match = (windows[:, :-1] == windows[:, -1:]).all(2)  # earlier (n-1)-grams equal to the last one
    followers = seqs[:, n - 1 :]  # the word after each of them
    hits = torch.zeros(R, vocab_size, dtype=torch.int32, device=seqs.device)
    hits.scatter_add_(1, followers, match.to(torch.int32))
    hits[:, end_id] = 0
    return hits > 0


class NoRepeatNgram:
    """A word that would repeat an n-gram already in the caption is not emitted (`<end>` always may)."""

    def __init__(self, n: int, vocab_size: int, end_id: int):
        self.n, self.vocab_size, self.end_id = n, vocab_size, end_id

    def __call__(self, logp, seqs, step):
        ban = repeat_ban(seqs, self.n, self.vocab_size, self.end_id)
        return logp if ban is None else logp.masked_fill(ban, float("-inf"))


class NoEcho:
    """No word right after itself, and none on both sides of `and` / `or` (`X and X`)."""

    def __init__(self, vocab: Vocab):
        self.joins = torch.tensor([vocab.stoi[w] for w in ("and", "or") if w in vocab.stoi], dtype=torch.long)
        self.end_id = vocab.end_id

    def __call__(self, logp, seqs, step):
        if seqs.shape[1] == 0:
            return logp
        if self.joins.device != seqs.device:
            self.joins = self.joins.to(seqs.device)
        rows = torch.arange(len(seqs), device=seqs.device)
        last = seqs[:, -1]
        logp = logp.clone()
        logp[rows, last] = torch.where(last == self.end_id, logp[rows, last], torch.full_like(logp[rows, 0], float("-inf")))
        if seqs.shape[1] >= 2:
            joined = torch.isin(last, self.joins)
            if bool(joined.any()):
                r = rows[joined]
                logp[r, seqs[joined, -2]] = float("-inf")
        return logp


def decoding_rules(vocab: Vocab, no_repeat_ngram: int = 0, no_echo: int = 0,
                   no_bare_noun: int = 0, no_bare_subject: float = 0.0) -> list[LogitProcessor]:
    """The rules every decoder obeys, in order."""
    rules: list[LogitProcessor] = [BanTokens([vocab.pad_id, vocab.start_id, vocab.unk_id], len(vocab)),
                                   NoEndFirst(vocab.end_id)]
    if no_repeat_ngram > 0:
        rules.append(NoRepeatNgram(no_repeat_ngram, len(vocab), vocab.end_id))
    if no_echo:
        rules.append(NoEcho(vocab))
    if no_bare_noun > 0 or no_bare_subject > 0:
        from captioner.decoding.copula import no_bare_noun_rule

        rules.append(no_bare_noun_rule(vocab.itos, no_bare_noun, no_bare_subject))
    return rules


def apply_rules(rules: list[LogitProcessor], logp: torch.Tensor, seqs: torch.Tensor, step: int) -> torch.Tensor:
    for rule in rules:
        logp = rule(logp, seqs, step)
    return logp
