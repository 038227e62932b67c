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
"""
from __future__ import annotations

from functools import partial

import torch

from captioner.decoding.processors import SideBySide, TagBonus


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


def vocabulary_words(tagger, vocab) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`label_to_vocab`'s matrix as its nonzero entries, (label ids (E,), vocabulary ids (E,)), and
    `word_groups` (V,); computed once per tagger and vocabulary."""
    key = (id(tagger), id(vocab))
    hit = _cache.get(key)
    if hit is None or hit[0] is not tagger or hit[1] is not vocab:  # ids are reused once objects are freed
        m = label_to_vocab(tagger.labels, vocab)
        labels, words = m.nonzero(as_tuple=True)
        hit = _cache[key] = (tagger, vocab, (labels, words, word_groups(m)))
    return hit[2]


def word_groups(m: torch.Tensor) -> torch.Tensor:
    """(V,): the label each vocabulary word stands for (-1: none), from `label_to_vocab`'s matrix."""
    has = m.sum(0) > 0
    return torch.where(has, m.argmax(0), torch.full_like(has, -1, dtype=torch.long))


def tag_bonus(tagger, word_probs: torch.Tensor, vocab, decoding, new_from: int | None = None,
              penalty=None) -> TagBonus | None:
    """The `TagBonus` of a batch (`word_probs` (B, W) from `ObjectTagger.word_probabilities`), or
    None when grounded decoding is off (`decoding.tag_bonus` 0). `new_from`: where the words that
    `captioner.tags.new_words` appended to `vocab` start; such a word is banned (-inf) for every photo
    that does not have it as a confident tag, when another photo of the batch has it (a word no photo
    has is left to the decoder, which does not compute it: `ExtendedStepDecoder`'s `active`).
    `penalty`: a function of the vocabulary giving the support penalty ((B, V) or None,
    `captioner.support.penalty`), added to the bonus; with it the steer exists even without tags."""
    pen = penalty(vocab) if penalty is not None else None
    if tagger is None or word_probs is None or decoding.tag_bonus <= 0:
        if pen is None:
            return None
        groups = vocabulary_words(tagger, vocab)[2] if tagger is not None else torch.full((len(vocab),), -1)
        return TagBonus(pen, groups, penalty=pen)
    labels, words, groups = vocabulary_words(tagger, vocab)
    probs = word_probs.float() * (word_probs >= decoding.tag_min)
    share = torch.zeros(len(probs), len(vocab)).index_add_(1, words, probs[:, labels]).clamp(max=1.0)
    bonus = decoding.tag_bonus * share
    if new_from is not None and new_from < len(vocab):
        # only the new words some photo of the batch is tagged with are banned for the others; the rest
        # are never computed (`grounded_search` gives `ExtendedStepDecoder` the active ones)
        new = share[:, new_from:]
        bonus[:, new_from:] = bonus[:, new_from:].masked_fill((new <= 0) & (new > 0).any(0), float("-inf"))
    if pen is not None:
        bonus = bonus + pen
    return TagBonus(bonus, groups, new_from=new_from if new_from is not None and new_from < len(vocab) else None,
                    penalty=pen)


def grounded_search(tagger, word_probs: torch.Tensor, decoder, vocab, decoding, new_words=None, penalty=None):
    """What grounded decoding searches with for a batch: (step decoder, vocabulary, `TagBonus` or None).

    With `new_words` (`captioner.tags.new_words.NewWords`) and a photo of the batch confidently
    tagged with one of them, the decoder and vocabulary are the extended view; otherwise the model's
    own (so a batch without such a tag decodes exactly as without new words). The steer is None when
    grounding is off or no photo of the batch has a confident tag to steer with (and there is no support
    `penalty`, see `tag_bonus`)."""
    extended = extended_vocabulary(new_words, vocab) if new_words is not None else None
    if extended is not None:
        ext_vocab, new = extended
        steer = tag_bonus(tagger, word_probs, ext_vocab, decoding, new_from=len(vocab), penalty=penalty)
        usable = (steer.bonus[:, len(vocab):] > 0).any(0) if steer is not None else None
        if usable is not None and bool(usable.any()):
            from captioner.tags.new_words import ExtendedStepDecoder

            return (ExtendedStepDecoder(decoder, vocab, new, usable.nonzero().squeeze(1).tolist(),
                                        bool(decoding.no_echo)), ext_vocab, steer)
    steer = tag_bonus(tagger, word_probs, vocab, decoding, penalty=penalty)
    steers = steer is not None and (steer.penalty is not None or any(steer.steers(b) for b in range(len(steer.bonus))))
    return decoder, vocab, steer if steers else None


def extended_vocabulary(new_words, vocab):
    """(`vocab` with the usable new words appended, those new words), or None when none is usable;
    computed once per new-words table and vocabulary."""
    from captioner.tags.new_words import extend_vocab

    key = ("extended", id(new_words), id(vocab))
    hit = _cache.get(key)
    if hit is None or hit[0] is not new_words or hit[1] is not vocab:  # ids are reused once objects are freed
        new = new_words.usable(vocab)
        hit = _cache[key] = (new_words, vocab, (extend_vocab(vocab, new), new) if new.words else None)
    return hit[2]


def grounded_decode(decoder, features: torch.Tensor, vocab, decoding, steer: TagBonus | None):
    """Candidates for each photo with grounded decoding: each photo with a steering tag is searched
    twice side by side in one batched search, without and with the bonus, and keeps the plain
    captions unless their best names none of its tags and is `unsure` (then the steered ones). The steered twin
    stops as soon as a live plain beam names a tag (`SideBySide`); a photo whose twin stopped but
    whose plain caption still misses its tags is searched again alone, so the captions are always
    those of a plain search followed by a steered one for the photos that miss."""
    from captioner.decoding.search import decode

    if steer is None:
        return decode(decoder, features, vocab, decoding)
    B = len(features)
    tagged = [b for b in range(B) if steer.steers(b)]
    both = SideBySide(steer, tagged, vocab.end_id)
    out = decode(decoder, torch.cat([features, features[tagged]]), vocab, decoding, both)
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


def unsure(best, decoding) -> bool:
    """Whether grounded decoding may replace the plain search's `best` candidate: its mean
    log-probability per word is below `decoding.tag_unsure` (0: always). On Flickr8k, the model's own
    world, most captions are surer than that and stay as they are; on everyday photos most are not."""
    return decoding.tag_unsure >= 0 or best.normalized_score < decoding.tag_unsure


def decode_with_tags(tagger, decoder, features: torch.Tensor, vocab, decoding, new_words=None,
                     word_probs: torch.Tensor | None = None, reliability=None, support=None):
    """Beam search on encoder grids, grounded when `decoding.tag_bonus` > 0 and there is a `tagger`
    (`grounded_search`, then `grounded_decode`), plain otherwise. `word_probs` (B, W): the tagger's
    word probabilities, when already computed. `reliability` (`captioner.tags.reliability.TagReliability`):
    with `decoding.tag_reliable` > 0, the tag words people name less often than that do not steer.
    `support` (`captioner.support.penalty.SupportEvidence`): with `decoding.support_penalty` > 0, object
    words the photo does not support are lowered in every search (plain and steered)."""
    from captioner.decoding.search import decode

    penalty = None
    if support is not None and decoding.support_penalty > 0:
        if word_probs is None and tagger is not None:
            word_probs = tagger.word_probabilities(features)
        penalty = partial(support.penalty, support.presence(features, word_probs),
                          strength=decoding.support_penalty, minimum=decoding.support_min)
    if (decoding.tag_bonus <= 0 or tagger is None) and penalty is None:
        return decode(decoder, features, vocab, decoding)
    if word_probs is None and tagger is not None:
        word_probs = tagger.word_probabilities(features)
    if decoding.tag_reliable > 0 and reliability is not None and tagger is not None:
        word_probs = word_probs * reliability.mask(tagger.labels, decoding.tag_reliable)
    decoder, vocab, steer = grounded_search(tagger, word_probs, decoder, vocab, decoding, new_words, penalty)
    return grounded_decode(decoder, features, vocab, decoding, steer)
