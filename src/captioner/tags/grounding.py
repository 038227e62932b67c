"""Grounded decoding's bonus: the image's tag probabilities, moved onto the decoder's vocabulary.

A tag steers only when it is one word that the vocabulary holds (its plural too: `dog`, `dogs`).
Tag words the vocabulary lacks (2,538 words from Flickr8k: `broccoli`, `giraffe`, `zebra`,
`sandwich`, `banana`, `oven`, `sink`, `clock` are missing) cannot be generated; they stay tags
(shown and searchable), and the general words of their classes (`vegetable`, `fruit`, `food`,
`kitchen`) steer where the vocabulary has them.
"""
from __future__ import annotations

import torch

from captioner.decoding.processors import TagBonus


def label_to_vocab(labels: list[str], vocab) -> torch.Tensor:
    """(W, V) 0/1: which vocabulary words each tagger label (one word) stands for."""
    m = torch.zeros(len(labels), len(vocab))
    stoi = vocab.stoi
    for i, label in enumerate(labels):
        if " " in label or "-" in label:
            continue
        for form in (label, label + "s", label + "es"):
            j = stoi.get(form)
            if j is not None:
                m[i, j] = 1.0
    return m


_cache: dict = {}


def vocabulary_words(tagger, vocab) -> torch.Tensor:
    key = (id(tagger), id(vocab))
    if key not in _cache:
        _cache[key] = label_to_vocab(tagger.labels, vocab)
    return _cache[key]


def word_groups(m: torch.Tensor) -> torch.Tensor:
    """(V,): the label each vocabulary word stands for (-1: none), from `label_to_vocab`'s matrix."""
    has = m.sum(0) > 0
    return torch.where(has, m.argmax(0), torch.full_like(has, -1, dtype=torch.long))


def tag_bonus(tagger, word_probs: torch.Tensor, vocab, decoding) -> TagBonus | None:
    """The `TagBonus` of a batch (`word_probs` (B, W) from `ObjectTagger.word_probabilities`), or
    None when grounded decoding is off (`decoding.tag_bonus` 0)."""
    if tagger is None or word_probs is None or decoding.tag_bonus <= 0:
        return None
    m = vocabulary_words(tagger, vocab)
    probs = word_probs.float() * (word_probs >= decoding.tag_min)
    bonus = decoding.tag_bonus * (probs @ m).clamp(max=1.0)
    return TagBonus(bonus, word_groups(m))
