"""The decoding rules, written once as logit processors and used by every way of decoding
(greedy, beam search, SCST sampling, anything added later).

A processor takes the log-probabilities of the next word for each row (R, V), the words each row has
emitted so far (R, t) and the step t, and returns the log-probabilities with forbidden words set to
-inf. `decoding_rules` gives the standard list for a vocabulary and a `DecodingConfig`:

- `<pad>`, `<start>` and `<unk>` are never emitted (`BanTokens`);
- `<end>` is not the first word (`NoEndFirst`);
- with `no_repeat_ngram` n > 0, no n-gram appears twice in a caption (`NoRepeatNgram`).

`TagBonus` (grounded decoding, `DecodingConfig.tag_bonus`) is not a rule but a steer: it adds a
per-image bonus to the words of the objects the image's tags name. It needs to know which image
each row belongs to, so it is applied by the searches after the rules (`apply_steer`), and the
candidates' scores stay the model's own log-probabilities.
"""
from __future__ import annotations

from typing import Protocol

import torch

from captioner.model.vocab import Vocab


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


def decoding_rules(vocab: Vocab, no_repeat_ngram: int = 0) -> list[LogitProcessor]:
    """The rules every decoder obeys, in order."""
    rules: list[LogitProcessor] = [BanTokens([vocab.pad_id, vocab.start_id, vocab.unk_id], len(vocab)),
                                   NoEndFirst(vocab.end_id)]
    if no_repeat_ngram > 0:
        rules.append(NoRepeatNgram(no_repeat_ngram, len(vocab), vocab.end_id))
    return rules


def apply_rules(rules: list[LogitProcessor], logp: torch.Tensor, seqs: torch.Tensor, step: int) -> torch.Tensor:
    for rule in rules:
        logp = rule(logp, seqs, step)
    return logp


class TagBonus:
    """Grounded decoding: `bonus` (B, V) is added to the log-probabilities of each image's rows, for
    words whose tag the row has not named yet. `groups` (V,): the tag each word belongs to (-1: none),
    so `dog` and `dogs` are one tag: once either is emitted, neither gets the bonus again."""

    def __init__(self, bonus: torch.Tensor, groups: torch.Tensor):
        self.bonus, self.groups = bonus, groups.long()

    def __call__(self, logp: torch.Tensor, seqs: torch.Tensor, step: int, img_of: torch.Tensor) -> torch.Tensor:
        if self.bonus.device != logp.device or self.bonus.dtype != logp.dtype:
            self.bonus, self.groups = self.bonus.to(logp.device, logp.dtype), self.groups.to(logp.device)
        bonus = self.bonus[img_of]
        if seqs.shape[1]:
            n_groups = int(self.groups.max()) + 2
            named = torch.zeros(seqs.shape[0], n_groups, dtype=torch.bool, device=logp.device)
            named.scatter_(1, self.groups[seqs] + 1, True)
            named[:, 0] = False  # words of no tag
            bonus = bonus.masked_fill(named[:, self.groups + 1], 0.0)
        return logp + bonus

    def misses(self, image: int, ids: list[int]) -> bool:
        """Whether `image` has steering tags and a caption of it (word ids) names none of them."""
        wanted = set(self.groups[self.bonus[image] > 0].tolist()) - {-1}
        return bool(wanted) and not wanted & set(self.groups[ids].tolist())

    def subset(self, images: list[int]) -> TagBonus:
        return TagBonus(self.bonus[images], self.groups)


def apply_steer(steer: TagBonus | None, logp: torch.Tensor, seqs: torch.Tensor, step: int,
                img_of: torch.Tensor) -> torch.Tensor:
    return logp if steer is None else steer(logp, seqs, step, img_of)
