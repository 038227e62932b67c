"""Find gallery photos by description: the captioner's likelihood of the text, fused with full text.

For each candidate photo: score = likelihood - prior_weight * prior + fulltext_weight * fulltext, where
`likelihood` is the mean log-probability per word (and `<end>`) of the description given the photo's
grid, `prior` the photo's mean likelihood over everyday captions (photos that fit any text lose their
head start), and `fulltext` 1 / log2(2 + r) for the gallery's own full-text hit at rank r (0 if the words
do not match its caption). Words the model does not know are not scored; they are reported and left
to the full-text part.

A gallery larger than `FindConfig.shortlist` is shortlisted first, cheaply: the best
`shortlist_fulltext` full-text hits, then the photos whose pooled features lie nearest to where the
description's words say its photos lie (`first_stage.QueryProjection`: one dot product per photo).
Without a fitted projection for the model (or with `first_stage` off): the full-text hits, then the
photos nearest (pooled features) to the best of them, then the rest (highest prior first, where known).
With `prune_keep` > 0, every shortlisted photo is scored on the first `prune_after` words and only the
best `prune_keep` to the end (faster; the others rank below; scripts/eval_retrieval.py measures what it
costs).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from captioner.retrieval.config import FindConfig
from captioner.retrieval.index import PhotoIndex, Progress, half_products, photo_index, scorer_for, vocab_of
from captioner.retrieval.tokens import query_tokens


@dataclass
class Match:
    """One found item: its id, file name and caption, the fused score and its parts."""

    item_id: int
    original_name: str
    caption: str
    score: float
    likelihood: float | None = None   # mean log-probability per scored word; None: not scored
    prior: float | None = None
    fulltext_rank: int | None = None  # 0-based rank in the gallery's full-text search; None: no match

    def to_dict(self) -> dict:
        return asdict(self)


class Matches(list):
    """`find`'s answer: a list of `Match`, best first, with `query`, `unknown_words` (not scored by
    the model; full-text search alone looked for them) and `scored` (photos whose likelihood was computed)."""

    def __init__(self, matches=(), *, query: str = "", unknown_words=(), scored: int = 0):
        super().__init__(matches)
        self.query = query
        self.unknown_words = list(unknown_words)
        self.scored = scored

    def to_dict(self) -> dict:
        return {"query": self.query, "unknown_words": self.unknown_words, "scored": self.scored,
                "matches": [m.to_dict() for m in self]}


def fulltext_hits(gallery, query: str, n: int) -> list[int]:
    """The gallery's full-text search results for `query` (item ids, best first, at most n)."""
    from captioner.storage.errors import GalleryError

    try:
        page = gallery.search(query, page=1, per_page=n)
    except GalleryError:  # no searchable word
        return []
    return [item["id"] for item in page.items] if page.total else []


def match_strength(likelihood: float | None, config: FindConfig | None = None) -> float | None:
    """How well a description fits a photo, 0-1, from its likelihood (mean log-probability per word): the
    chance, fitted on Flickr8k validation photos, that the photo is the one the description was written for
    rather than another (the two equally likely); None when the photo was not scored.  Under
    `FindConfig.strength_cutoff` the photo does not fit well."""
    config = config or FindConfig()
    if likelihood is None or not np.isfinite(likelihood):
        return None
    z = config.strength_slope * float(likelihood) + config.strength_intercept
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


def fulltext_bonus(rank: int) -> float:
    return 1.0 / np.log2(2.0 + rank)


def shortlist(index: PhotoIndex, hits: list[int], size: int, first_stage: np.ndarray | None = None,
              fulltext: int | None = None) -> np.ndarray:
    """Row numbers of at most `size` photos worth scoring, ascending.

    With `first_stage` (a score per row, higher first): the best `fulltext` full-text hits (all that fit
    when None), then the best first-stage rows. Without: the full-text hits, then the photos nearest to
    the best hits' pooled features (round robin over the first five), then the highest priors."""
    if len(index) <= size:
        return np.arange(len(index))
    chosen: dict[int, None] = {}
    indexed = set(index.ids.tolist()) if len(hits) else set()
    hit_rows = [int(r) for r in index.rows([h for h in hits if h in indexed])]
    for r in hit_rows[: size if fulltext is None else min(size, fulltext)]:
        chosen[r] = None
    if first_stage is not None:
        need = size - len(chosen)
        if need > 0:
            best = np.argpartition(-first_stage, min(size, len(first_stage) - 1))[:size]
            for r in best[np.lexsort((best, -first_stage[best]))]:
                chosen.setdefault(int(r), None)
                if len(chosen) >= size:
                    break
        return np.array(sorted(chosen), dtype=np.int64)
    seeds = hit_rows[:5]
    if seeds and len(chosen) < size:
        sims = half_products(index, index.pooled[seeds].T)  # (n, seeds)
        orders = [np.argsort(-sims[:, j]) for j in range(len(seeds))]
        pos = 0
        while len(chosen) < size and pos < len(index):
            for order in orders:
                chosen.setdefault(int(order[pos]), None)
                if len(chosen) >= size:
                    break
            pos += 1
    if len(chosen) < size:
        for r in np.argsort(-np.nan_to_num(index.prior, nan=0.0), kind="stable"):
            chosen.setdefault(int(r), None)
            if len(chosen) >= size:
                break
    return np.array(sorted(chosen), dtype=np.int64)


def first_stage_scores(captioner, index: PhotoIndex, query: str, config: FindConfig) -> np.ndarray | None:
    """Each indexed photo's first-stage score for `query` (see `first_stage`), or None when there is no
    projection for this model, the first stage is off, or the gallery fits the shortlist anyway."""
    if not config.first_stage or len(index) <= config.shortlist:
        return None
    from captioner.retrieval.first_stage import projection_for

    projection = projection_for(captioner)
    if projection is None or projection.feature_dim != index.pooled.shape[1]:
        return None
    return half_products(index, projection.query_vector(vocab_of(captioner), query))


def find(gallery, captioner, query: str, top: int = 10, config: FindConfig | None = None, *,
         progress: Progress | None = None, index: PhotoIndex | None = None, timings: dict | None = None) -> Matches:
    """The gallery's photos that best fit the description `query`, best first (at most `top`).

    Items without features are given them first (their stored image encoded, `progress` follows);
    `index` (from `photo_index`) saves that look-up when many queries run against one gallery.
    `timings`, if given, receives the seconds spent in each part (index, fulltext, shortlist,
    read_grids, score, results)."""
    clock = _Clock(timings)
    config = config or FindConfig()
    top = top if top is not None else config.top
    scorer = scorer_for(captioner)
    vocab = vocab_of(captioner)
    tokens = query_tokens(vocab, query, captioner.decoding.max_len)
    if index is None:
        index = photo_index(gallery, captioner, generic_captions=config.generic_captions, scorer=scorer,
                            progress=progress, priors=config.prior_weight > 0)
    clock("index")
    hits = fulltext_hits(gallery, query, config.fulltext_hits)
    clock("fulltext")
    hit_rank = {item_id: r for r, item_id in enumerate(hits)}
    scores: dict[int, float] = {}
    parts: dict[int, tuple[float | None, float | None]] = {}
    scored = 0
    if tokens.usable and len(index):
        cheap = first_stage_scores(captioner, index, query, config)
        rows = shortlist(index, hits, config.shortlist, cheap,
                         config.shortlist_fulltext if cheap is not None else None)
        ids = index.ids[rows]
        clock("shortlist")
        for s in range(0, len(ids), 1024):
            got, grids = gallery.features([int(i) for i in ids[s : s + 1024]], model_name=captioner.name)
            clock("read_grids")
            if not len(got):
                continue
            prune = (config.prune_after, config.prune_keep) if 0 < config.prune_keep < len(got) else None
            ll = scorer.text_likelihood(scorer.photos(grids), tokens, prune=prune)
            prior = index.prior[index.rows(got)]
            for item_id, lik, pri in zip(got, ll, prior):
                if not np.isfinite(lik):  # dropped by pruning after the first words
                    continue
                bonus = fulltext_bonus(hit_rank[item_id]) if item_id in hit_rank else 0.0
                pri = float(pri) if np.isfinite(pri) else None  # not computed: the prior weight is 0
                penalty = config.prior_weight * pri if config.prior_weight and pri is not None else 0.0
                scores[item_id] = float(lik - penalty + config.fulltext_weight * bonus)
                parts[item_id] = (float(lik), pri)
            scored += len(got)
            clock("score")
    # full-text hits the model could not score (no features, unknown words only) rank by full text alone,
    # below every scored photo
    floor = min(scores.values(), default=0.0) - 1.0
    for item_id, r in hit_rank.items():
        if item_id not in scores:
            scores[item_id] = floor - r * 1e-3
            parts[item_id] = (None, None)
    best = sorted(scores, key=lambda i: (-scores[i], i))[:top]
    matches = []
    for item_id in best:
        item = gallery.get(item_id)
        if item is None:
            continue
        lik, pri = parts[item_id]
        matches.append(Match(item_id, item.get("original_name") or "", item.get("caption") or "", scores[item_id],
                             lik, pri, hit_rank.get(item_id)))
    clock("results")
    return Matches(matches, query=query, unknown_words=tokens.unknown, scored=scored)


class _Clock:
    """Adds the seconds since the last call to `timings[part]` (nothing when `timings` is None)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, part: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[part] = self.timings.get(part, 0.0) + now - self.last
            self.last = now
