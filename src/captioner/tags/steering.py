"""Grounded decoding written once, for torch tensors (`captioner.tags.grounding`) and numpy arrays
(`captioner.runtime.numpy_grounding`): the tag words' columns in the vocabulary, the bonus arithmetic, the
side-by-side search and its fallback, and the order in which support penalty, reliability and new words
come in. The array operations come from `captioner.decoding.arrays`, the search (`decode`) from the caller.
Importing this module does not import torch.
"""
from __future__ import annotations

from functools import partial

from captioner.decoding.arrays import arrays_of
from captioner.decoding.steer import SideBySide, TagBonus
from captioner.tags.new_words import ExtendedStepDecoder, extend_vocab

_cache: dict = {}


def label_to_vocab(labels: list[str], vocab, xp):
    """(W, V) 0/1 (`xp`'s float array): which vocabulary words each tagger label (one word) stands for."""
    m = xp.full((len(labels), len(vocab)), 0, None, "float")
    stoi = vocab.stoi
    for i, label in enumerate(labels):
        if " " in label or "-" in label:
            continue
        for form in (label, label + "s", label + "es"):
            j = stoi.get(form)
            if j is not None:
                m[i, j] = 1.0
    return m


def word_groups(m):
    """(V,): the label each vocabulary word stands for (-1: none), from `label_to_vocab`'s matrix."""
    xp = arrays_of(m)
    return xp.to_long(xp.where(m.sum(0) > 0, m.argmax(0), -1))


def vocabulary_words(labels: list[str], vocab, xp):
    """`label_to_vocab`'s matrix as its nonzero entries, (label ids (E,), vocabulary ids (E,)), and
    `word_groups` (V,); computed once per label list, vocabulary and kind of array."""
    key = (id(labels), id(vocab), id(xp))
    hit = _cache.get(key)
    if hit is None or hit[0] is not labels or hit[1] is not vocab:  # ids are reused once objects are freed
        m = label_to_vocab(labels, vocab, xp)
        label_ids, word_ids = xp.nonzero(m)
        hit = _cache[key] = (labels, vocab, (label_ids, word_ids, word_groups(m)))
    return hit[2]


def reliable(reliability, labels: list[str], minimum: float, like):
    """(W,) 1.0 for the labels reliable enough to steer (`reliability.share(label)` >= `minimum`), else 0.0, as
    `like`'s kind of array; computed once per reliability, label list, minimum and kind of array."""
    xp = arrays_of(like)
    key = ("reliable", id(reliability), id(labels), minimum, id(xp))
    hit = _cache.get(key)
    if hit is None or hit[0] is not reliability or hit[1] is not labels:  # ids are reused once objects are freed
        mask = xp.asarray([float(reliability.share(w) >= minimum) for w in labels], None, "float")
        hit = _cache[key] = (reliability, labels, mask)
    return xp.follow(hit[2], like)


def tag_bonus(labels: list[str] | None, word_probs, vocab, decoding, new_from: int | None = None,
              penalty=None) -> TagBonus | None:
    """The `TagBonus` of a batch (`word_probs` (B, W), columns following `labels`), or None when grounded
    decoding is off (`decoding.tag_bonus` 0). `new_from`: where the words that `captioner.tags.new_words`
    appended to `vocab` start; such a word is banned (-inf) for every photo that does not have it as a
    confident tag, when another photo of the batch has it (a word no photo has is left to the decoder,
    which does not compute it: `ExtendedStepDecoder`'s `active`). `penalty`: a function of the vocabulary
    giving the support penalty ((B, V) or None, `captioner.support.penalty`), added to the bonus; with it
    the steer exists even without tags."""
    pen = penalty(vocab) if penalty is not None else None
    if labels is None or word_probs is None or decoding.tag_bonus <= 0:
        if pen is None:
            return None
        xp = arrays_of(pen)
        groups = vocabulary_words(labels, vocab, xp)[2] if labels is not None else xp.full((len(vocab),), -1, None, "long")
        return TagBonus(pen, groups, penalty=pen)
    xp = arrays_of(word_probs)
    label_ids, word_ids, groups = vocabulary_words(labels, vocab, xp)
    probs = xp.to_float(word_probs) * (word_probs >= decoding.tag_min)
    share = xp.clamp_max(xp.index_add(xp.full((len(probs), len(vocab)), 0, None, "float"), word_ids,
                                      probs[:, label_ids]), 1.0)
    bonus = decoding.tag_bonus * share
    new_from = new_from if new_from is not None and new_from < len(vocab) else None
    if new_from is not None:
        # only the new words some photo of the batch is tagged with are banned for the others; the rest
        # are never computed (`grounded_search` gives `ExtendedStepDecoder` the active ones)
        new = share[:, new_from:]
        bonus[:, new_from:] = xp.where((new <= 0) & (new > 0).any(0), float("-inf"), bonus[:, new_from:])
    if pen is not None:
        bonus = bonus + pen
    return TagBonus(bonus, groups, new_from=new_from, penalty=pen)


def extended_vocabulary(new_words, vocab):
    """(`vocab` with the usable new words appended, those new words), or None when none is usable;
    computed once per new-words table and vocabulary."""
    key = ("extended", id(new_words), id(vocab))
    hit = _cache.get(key)
    if hit is None or hit[0] is not new_words or hit[1] is not vocab:  # ids are reused once objects are freed
        new = new_words.usable(vocab)
        hit = _cache[key] = (new_words, vocab, (extend_vocab(vocab, new), new) if new.words else None)
    return hit[2]


def grounded_search(labels: list[str] | None, word_probs, decoder, vocab, decoding, new_words=None, penalty=None):
    """What grounded decoding searches with for a batch: (step decoder, vocabulary, `TagBonus` or None).

    With `new_words` (`captioner.tags.new_words.NewWords`) and a photo of the batch confidently
    tagged with one of them, the decoder and vocabulary are the extended view; otherwise the model's
    own (so a batch without such a tag decodes exactly as without new words). The steer is None when
    grounding is off or no photo of the batch has a confident tag to steer with (and there is no support
    `penalty`, see `tag_bonus`)."""
    extended = extended_vocabulary(new_words, vocab) if new_words is not None else None
    if extended is not None:
        ext_vocab, new = extended
        steer = tag_bonus(labels, word_probs, ext_vocab, decoding, new_from=len(vocab), penalty=penalty)
        usable = (steer.bonus[:, len(vocab):] > 0).any(0) if steer is not None else None
        if usable is not None and bool(usable.any()):
            active = steer.xp.nonzero(usable)[0].tolist()
            return ExtendedStepDecoder(decoder, vocab, new, active, bool(decoding.no_echo)), ext_vocab, steer
    steer = tag_bonus(labels, word_probs, vocab, decoding, penalty=penalty)
    steers = steer is not None and (steer.penalty is not None or any(steer.steers(b) for b in range(len(steer.bonus))))
    return decoder, vocab, steer if steers else None


def unsure(best, decoding) -> bool:
    """Whether grounded decoding may replace the plain search's `best` candidate: its mean
    log-probability per word is below `decoding.tag_unsure` (0: always). On Flickr8k, the model's own
    world, most captions are surer than that and stay as they are; on everyday photos most are not."""
    return decoding.tag_unsure >= 0 or best.normalized_score < decoding.tag_unsure


def grounded_decode(decode, decoder, features, vocab, decoding, steer: TagBonus | None):
    """Candidates for each photo with grounded decoding (`decode`: the search): each photo with a steering
    tag is searched twice side by side in one batched search, without and with the bonus, and keeps the
    plain captions unless their best names none of its tags and is `unsure` (then the steered ones). The
    steered twin stops as soon as a live plain beam names a tag (`SideBySide`); a photo whose twin stopped
    but whose plain caption still misses its tags is searched again alone, so the captions are always
    those of a plain search followed by a steered one for the photos that miss."""
    if steer is None:
        return decode(decoder, features, vocab, decoding)
    B = len(features)
    tagged = [b for b in range(B) if steer.steers(b)]
    both = SideBySide(steer, tagged, vocab.end_id)
    out = decode(decoder, arrays_of(features).cat([features, features[tagged]]), vocab, decoding, both)
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


def decode_with_tags(decode, tagger, decoder, features, vocab, decoding, new_words=None, word_probs=None,
                     reliability=None, support=None):
    """Search (`decode`) on encoder grids, grounded when `decoding.tag_bonus` > 0 and there is a `tagger`
    (`grounded_search`, then `grounded_decode`), plain otherwise. `word_probs` (B, W): the tagger's
    word probabilities, when already computed. `reliability` (anything with `share(word)`, e.g.
    `captioner.tags.reliability.TagReliability`): with `decoding.tag_reliable` > 0, the tag words people
    name less often than that do not steer. `support` (`captioner.support.penalty.SupportEvidence` or
    `captioner.runtime.numpy_support.NumpySupport`): with `decoding.support_penalty` > 0, object words the
    photo does not support are lowered in every search (plain and steered)."""
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
        word_probs = word_probs * reliable(reliability, tagger.labels, decoding.tag_reliable, word_probs)
    labels = tagger.labels if tagger is not None else None
    decoder, vocab, steer = grounded_search(labels, word_probs, decoder, vocab, decoding, new_words, penalty)
    return grounded_decode(decode, decoder, features, vocab, decoding, steer)
