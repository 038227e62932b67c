"""The careful caption: when the model is unsure of a photo's caption and the caption names an object the photo
barely supports, search again with such object words all but banned, and lead with that caption.

A photo is *triggered* when (1) its best caption's mean log-probability per word is below
`DecodingConfig.careful_unsure` (0: any caption; on Flickr8k, the model's own world, most captions are surer than
that, on everyday photos most are not) and (2) the caption names an object word (`captioner.evaluation.hallucination`
concepts: person, dog, snow, shirt ...) whose evidence (`captioner.support.penalty.SupportEvidence.presence`: the
word-presence head and the ImageNet classifier) is below `careful_min`. A triggered photo is searched again with the
support penalty raised to `careful_penalty` and its threshold to `careful_min`; that search's best caption, marked
`source="careful"`, comes first, followed by the descriptive ones (so `captioner caption --json` lists both). The
careful caption comes from the model's own search; no template words are added.

Everything here runs on candidates and a presence matrix; the searches are the caller's (`decode_fn`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from captioner.evaluation.hallucination import concept_of


def weakest_support(tokens: Sequence[str], presence_row: Sequence[float], names: Sequence[str]) -> float:
    """The lowest evidence among the object words of `tokens` whose concept has evidence (1.0: none)."""
    index = {c: k for k, c in enumerate(names)}
    values = [float(presence_row[index[c]]) for t in tokens if (c := concept_of(t)) in index]
    return min(values) if values else 1.0


def triggered(best, presence_row: Sequence[float], names: Sequence[str], unsure: float, minimum: float) -> bool:
    """Whether a photo whose best candidate is `best` gets the careful search (see the module's docstring)."""
    if minimum <= 0:
        return False
    if unsure < 0 and best.normalized_score >= unsure:
        return False
    return weakest_support(best.tokens, presence_row, names) < minimum


def careful_decode(decode_fn: Callable, features, decoding, support, tagger=None, word_probs=None):
    """Candidates per photo: `decode_fn(features, decoding, word_probs)` (the descriptive search, with the careful
    settings off), then for the triggered photos a second search with `support_penalty=careful_penalty` and
    `support_min=careful_min`, whose best candidate (`source="careful"`) is put before the descriptive ones (the
    list keeps its length: the last descriptive candidate makes way). `support`: the model's
    `SupportEvidence`; `tagger`: its ImageNet tagger (for `word_probs` when not given)."""
    plain = decoding.replace(careful_penalty=0.0)
    if decoding.careful_penalty <= 0 or support is None:
        return decode_fn(features, plain, word_probs)
    if word_probs is None and tagger is not None:
        word_probs = tagger.word_probabilities(features)
    cands = decode_fn(features, plain, word_probs)
    presence, names = support.presence(features, word_probs).tolist(), support.names
    rows = [b for b, cs in enumerate(cands)
            if cs and triggered(cs[0], presence[b], names, decoding.careful_unsure, decoding.careful_min)]
    if not rows:
        return cands
    strict = plain.replace(support_penalty=decoding.careful_penalty, support_min=decoding.careful_min)
    again = decode_fn(features[rows], strict, None if word_probs is None else word_probs[rows])
    for b, cs in zip(rows, again):
        if not cs:
            continue
        first = cs[0]
        first.source = "careful"
        cands[b] = [first] + [c for c in cands[b] if c.ids != first.ids][: max(len(cands[b]) - 1, 1)]
    return cands
