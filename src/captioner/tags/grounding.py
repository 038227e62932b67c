"""Grounded decoding: the image's tag probabilities, moved onto the decoder's vocabulary as a bonus.

A tag steers when it is one word that the vocabulary holds (its plural too: `dog`, `dogs`), or one of
the words the model folder's `new_words.json` adds at decode time (`captioner.tags.new_words`:
`zebra`, `broccoli`, `banana`, `sink`, `clock`, ...; they can be generated only for a photo with that
confident tag). Other tag words (`giraffe` is no ImageNet class; multi-word labels) stay tags: shown
and searchable, never generated.

`grounded_decode` searches each photo that has a confident tag twice side by side in one batched beam
search, without and with the bonus, and keeps the plain captions unless their best names none of the
photo's tags and the model is unsure of it (`DecodingConfig.tag_unsure`): so a photo already described
with its object, or one the model describes confidently, keeps its caption, and a single photo
costs one search over more rows instead of two searches (on Flickr8k about a third more decoder rows).

The rules are written once in `captioner.tags.steering` (torch-free, shared with the numpy path
`captioner.runtime.numpy_grounding`); this module runs them on torch tensors with the PyTorch search.
"""
from __future__ import annotations

import torch

from captioner.decoding.steer import TagBonus
from captioner.decoding.torch_arrays import TORCH
from captioner.tags import steering
from captioner.tags.steering import unsure, word_groups

__all__ = ["decode_with_tags", "label_to_vocab", "tag_bonus", "unsure", "word_groups"]


def label_to_vocab(labels: list[str], vocab) -> torch.Tensor:
    """(W, V) 0/1: which vocabulary words each tagger label (one word) stands for."""
    return steering.label_to_vocab(labels, vocab, TORCH)


def tag_bonus(tagger, word_probs: torch.Tensor, vocab, decoding, new_from: int | None = None,
              penalty=None) -> TagBonus | None:
    """The `TagBonus` of a batch (`word_probs` (B, W) from `ObjectTagger.word_probabilities`), or None
    when grounded decoding is off (`steering.tag_bonus`)."""
    labels = tagger.labels if tagger is not None else None
    return steering.tag_bonus(labels, word_probs, vocab, decoding, new_from, penalty)


def decode_with_tags(tagger, decoder, features: torch.Tensor, vocab, decoding, new_words=None,
                     word_probs: torch.Tensor | None = None, reliability=None, support=None):
    """Beam search on encoder grids, grounded when `decoding.tag_bonus` > 0 and there is a `tagger`,
    plain otherwise (`steering.decode_with_tags` with `captioner.decoding.search.decode`). `word_probs`
    (B, W): the tagger's word probabilities, when already computed. `reliability`
    (`captioner.tags.reliability.TagReliability`): with `decoding.tag_reliable` > 0, the tag words people
    name less often than that do not steer. `support` (`captioner.support.penalty.SupportEvidence`): with
    `decoding.support_penalty` > 0, object words the photo does not support are lowered in every search."""
    from captioner.decoding.search import decode

    return steering.decode_with_tags(decode, tagger, decoder, features, vocab, decoding, new_words, word_probs,
                                     reliability, support)
