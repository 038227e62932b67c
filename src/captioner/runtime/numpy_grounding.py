"""Grounded decoding in numpy (`captioner.tags.grounding` and the steers of `captioner.decoding.processors`):
a photo's confident tags become a bonus on their words, each tagged photo is searched side by side without
and with it, and keeps the plain captions unless their best names none of its tags and the model is unsure of
it; with the support penalty (`captioner.runtime.numpy_support`) in every search. Mirrors the PyTorch code
step for step, with words added at decode time (`captioner.runtime.numpy_new_words`). Not here yet: the
sentence bank.

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import numpy as np

from captioner.runtime.numpy_search import decode

NEG_INF = np.float32(-np.inf)


def label_to_vocab(labels: list[str], vocab) -> np.ndarray:
    """(W, V) 0/1: which vocabulary words each tagger label (one word) stands for."""
    m = np.zeros((len(labels), len(vocab)), dtype=np.float32)
    for i, label in enumerate(labels):
        if " " in label or "-" in label:
            continue
        for form in (label, label + "s", label + "es"):
            j = vocab.stoi.get(form)
            if j is not None:
                m[i, j] = 1.0
    return m


def word_groups(m: np.ndarray) -> np.ndarray:
    """(V,): the label each vocabulary word stands for (-1: none)."""
    return np.where(m.sum(0) > 0, m.argmax(0), -1).astype(np.int64)


class TagBonus:
    """`captioner.decoding.processors.TagBonus` (without new words)."""

    def __init__(self, bonus: np.ndarray, groups: np.ndarray, new_from: int | None = None,
                 penalty: np.ndarray | None = None):
        self.bonus, self.groups, self.new_from, self.penalty = bonus, groups, new_from, penalty
        self.tag_only = bonus if penalty is None else bonus - np.where(np.isinf(bonus), np.float32(0), penalty)
        self.cols = np.nonzero((bonus != 0).any(0))[0]
        self.col_bonus = bonus[:, self.cols]
        self.col_groups = groups[self.cols]
        self.named: np.ndarray | None = None

    def __call__(self, logp, seqs, step, img_of):
        if len(self.cols) == 0:
            return logp
        bonus = self.col_bonus[img_of]
        self.named = None
        if seqs.shape[1]:
            named = (self.groups[seqs][:, :, None] == self.col_groups[None, None, :]).any(1)
            named &= (self.col_groups >= 0)[None, :]
            self.named = named
            bonus = np.where(named & (bonus > 0), np.float32(0), bonus)
        out = logp.copy()
        out[:, self.cols] += bonus
        return out

    def steers(self, image: int) -> bool:
        return bool((self.tag_only[image] > 0).any())

    def misses(self, image: int, ids: list[int]) -> bool:
        wanted = set(self.groups[self.tag_only[image] > 0].tolist()) - {-1}
        return bool(wanted) and not wanted & set(self.groups[ids].tolist())

    def subset(self, images: list[int]) -> TagBonus:
        return TagBonus(self.bonus[images], self.groups, self.new_from,
                        None if self.penalty is None else self.penalty[images])

    def plain(self) -> np.ndarray:
        out = np.zeros_like(self.bonus) if self.penalty is None else self.penalty.copy()
        if self.new_from is not None:
            used = (self.bonus[:, self.new_from:] != 0).any(0)
            out[:, self.new_from:] = np.where(used, NEG_INF, out[:, self.new_from:])
        return out


class SideBySide(TagBonus):
    """`captioner.decoding.processors.SideBySide`: the plain and steered searches of the same photos in one batch."""

    def __init__(self, steer: TagBonus, tagged: list[int], end_id: int):
        P = len(steer.bonus)
        penalty = None if steer.penalty is None else np.concatenate([steer.penalty, steer.penalty[tagged]])
        super().__init__(np.concatenate([steer.plain(), steer.bonus[tagged]]), steer.groups, steer.new_from, penalty)
        self.n_plain, self.end_id = P, end_id
        self.twin = np.full(P + len(tagged), -1, dtype=np.int64)
        self.twin[P:] = tagged
        self.wanted = np.zeros((P, len(self.cols)), dtype=bool)
        if tagged:
            self.wanted[tagged] = self.col_bonus[P:] > 0
        self.stopped: set[int] = set()

    def __call__(self, logp, seqs, step, img_of):
        out = super().__call__(logp, seqs, step, img_of)
        if self.named is None:
            return out
        twin_of = self.twin[img_of]
        plain = twin_of < 0
        names = plain & (self.named & self.wanted[np.minimum(img_of, self.n_plain - 1)]).any(1)
        stop = ~plain & np.isin(twin_of, img_of[names])
        if stop.any():
            self.stopped.update(img_of[stop].tolist())
            end = out[stop, self.end_id]
            out[stop] = NEG_INF
            out[stop, self.end_id] = np.where(np.isfinite(end), end, np.float32(0))
        return out


def tag_bonus(labels: list[str] | None, word_probs: np.ndarray, vocab, decoding, new_from: int | None = None,
              penalty=None) -> TagBonus | None:
    pen = penalty(vocab) if penalty is not None else None
    if labels is None or word_probs is None or decoding.tag_bonus <= 0:
        if pen is None:
            return None
        groups = word_groups(label_to_vocab(labels, vocab)) if labels is not None else np.full(len(vocab), -1)
        return TagBonus(pen, groups, penalty=pen)
    m = label_to_vocab(labels, vocab)
    lab, words = np.nonzero(m)
    probs = word_probs.astype(np.float32) * (word_probs >= decoding.tag_min)
    share = np.zeros((len(probs), len(vocab)), dtype=np.float32)
    for e in range(len(lab)):  # index_add_, in the same order
        share[:, words[e]] += probs[:, lab[e]]
    share = np.minimum(share, np.float32(1.0))
    bonus = np.float32(decoding.tag_bonus) * share
    if new_from is not None and new_from < len(vocab):
        new = share[:, new_from:]  # new words no photo is tagged with are never computed (`active`)
        bonus[:, new_from:] = np.where((new <= 0) & (new > 0).any(0), NEG_INF, bonus[:, new_from:])
    if pen is not None:
        bonus = bonus + pen
    return TagBonus(bonus, word_groups(m), new_from if new_from is not None and new_from < len(vocab) else None,
                    penalty=pen)


def unsure(best, decoding) -> bool:
    return decoding.tag_unsure >= 0 or best.normalized_score < decoding.tag_unsure


def grounded_decode(decoder, features: np.ndarray, vocab, decoding, steer: TagBonus | None):
    if steer is None:
        return decode(decoder, features, vocab, decoding)
    B = len(features)
    tagged = [b for b in range(B) if steer.steers(b)]
    both = SideBySide(steer, tagged, vocab.end_id)
    out = decode(decoder, np.concatenate([features, features[tagged]]), vocab, decoding, both)
    plain, again = out[:B], []
    for i, b in enumerate(tagged):
        if steer.misses(b, plain[b][0].ids) and unsure(plain[b][0], decoding):
            if B + i in both.stopped:
                again.append(b)
            else:
                plain[b] = out[B + i]
    if again:
        for b, cands in zip(again, decode(decoder, features[again], vocab, decoding, steer.subset(again))):
            plain[b] = cands
    return plain


def grounded_search(labels, word_probs, decoder, vocab, decoding, new_words=None, penalty=None):
    """`captioner.tags.grounding.grounded_search`: (step decoder, vocabulary, steer or None)."""
    from captioner.runtime import numpy_new_words as nw

    new = nw.usable(new_words, vocab) if new_words else []
    if new:
        ext_vocab = nw.extend_vocab(vocab, new)
        steer = tag_bonus(labels, word_probs, ext_vocab, decoding, new_from=len(vocab), penalty=penalty)
        active = (steer.bonus[:, len(vocab):] > 0).any(0) if steer is not None else None
        if active is not None and active.any():
            return (nw.ExtendedStepDecoder(decoder, vocab, new, np.nonzero(active)[0].tolist(), bool(decoding.no_echo)),
                    ext_vocab, steer)
    steer = tag_bonus(labels, word_probs, vocab, decoding, penalty=penalty)
    steers = steer is not None and (steer.penalty is not None or any(steer.steers(b) for b in range(len(steer.bonus))))
    return decoder, vocab, steer if steers else None


def decode_with_tags(tagger, decoder, features: np.ndarray, vocab, decoding, word_probs=None, reliability=None,
                     support=None, new_words=None):
    """`captioner.tags.grounding.decode_with_tags`. `new_words`: (word, proxies) pairs
    (`captioner.runtime.numpy_new_words.load_new_words`). `tagger`: a
    `captioner.runtime.numpy_tagger.NumpyTagger`; `reliability`: anything with `share(word)` (the model
    folder's tag reliability); `support`: a `captioner.runtime.numpy_support.NumpySupport`."""
    if decoding.bank_shortlist > 0:
        raise ValueError("the sentence bank needs the PyTorch path")
    penalty = None
    if support is not None and decoding.support_penalty > 0:
        if word_probs is None and tagger is not None:
            word_probs = tagger.word_probabilities(features)
        presence = support.presence(features, word_probs)

        def penalty(v):
            return support.penalty(presence, v, decoding.support_penalty, decoding.support_min)
    if (decoding.tag_bonus <= 0 or tagger is None) and penalty is None:
        return decode(decoder, features, vocab, decoding)
    if word_probs is None and tagger is not None:
        word_probs = tagger.word_probabilities(features)
    if decoding.tag_reliable > 0 and reliability is not None and tagger is not None:
        mask = np.array([float(reliability.share(w) >= decoding.tag_reliable) for w in tagger.labels], np.float32)
        word_probs = word_probs * mask
    labels = tagger.labels if tagger is not None else None
    decoder, vocab, steer = grounded_search(labels, word_probs, decoder, vocab, decoding, new_words, penalty)
    return grounded_decode(decoder, features, vocab, decoding, steer)
