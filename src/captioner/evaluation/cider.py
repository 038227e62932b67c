"""CIDEr-D for rewards: scores single captions against their references quickly, with the n-gram
document frequencies fixed once from a reference corpus (the training captions for SCST).

The formula is the COCO caption tools' CIDEr (which is CIDEr-D): TF-IDF n-gram vectors for
n = 1..4, clipped overlap with each reference, a Gaussian length penalty (sigma 6), the mean over
references and over n, times 10. With the document frequencies taken from the very references
being scored it gives the same numbers as pycocoevalcap's `Cider` (tested).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

MAX_N = 4
SIGMA = 6.0


def ngram_counts(words: Sequence[str], max_n: int = MAX_N) -> Counter:
    """Counts of every n-gram (as a tuple) of length 1..max_n."""
    counts: Counter = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i : i + n])] += 1
    return counts


class CiderD:
    """CIDEr-D scorer with document frequencies from `corpus`: one list of tokenised references
    per image (each image counts once per n-gram)."""

    def __init__(self, corpus: Iterable[Sequence[Sequence[str]]]):
        df: Counter = Counter()
        n_docs = 0
        for refs in corpus:
            n_docs += 1
            df.update({g for r in refs for g in ngram_counts(r)})
        if n_docs == 0:
            raise ValueError("CIDEr-D needs at least one image's references for document frequencies")
        self.df = df
        self.log_n_docs = math.log(float(n_docs))
        self._ref_cache: dict = {}

    def _vector(self, counts: Counter):
        vec = [defaultdict(float) for _ in range(MAX_N)]
        norm = [0.0] * MAX_N
        for gram, tf in counts.items():
            n = len(gram) - 1
            idf = self.log_n_docs - math.log(max(1.0, float(self.df.get(gram, 0.0))))
            vec[n][gram] = float(tf) * idf
            norm[n] += vec[n][gram] ** 2
        return vec, [math.sqrt(x) for x in norm]

    def _refs(self, key, refs: Sequence[Sequence[str]]):
        if key is not None and key in self._ref_cache:
            return self._ref_cache[key]
        out = [(*self._vector(ngram_counts(r)), len(r)) for r in refs]
        if key is not None:
            self._ref_cache[key] = out
        return out

    def score(self, hyp: Sequence[str], refs: Sequence[Sequence[str]], key=None) -> float:
        """CIDEr-D of one tokenised caption against its tokenised references (x10 scale, as COCO).
        `key` (e.g. the image id) caches the references' vectors across calls."""
        vec_h, norm_h, len_h = *self._vector(ngram_counts(hyp)), len(hyp)
        ref_data = self._refs(key, refs)
        if not ref_data:
            return 0.0
        total = [0.0] * MAX_N
        for vec_r, norm_r, len_r in ref_data:
            delta = float(len_h - len_r)
            for n in range(MAX_N):
                val = sum(min(v, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, v in vec_h[n].items())
                if norm_h[n] != 0 and norm_r[n] != 0:
                    val /= norm_h[n] * norm_r[n]
                total[n] += val * math.exp(-(delta ** 2) / (2 * SIGMA ** 2))
        return 10.0 * sum(total) / MAX_N / len(ref_data)

    def corpus_score(self, hyps: Mapping[str, Sequence[str]], refs: Mapping[str, Sequence[Sequence[str]]]) -> float:
        """Mean CIDEr-D over images."""
        return sum(self.score(hyps[k], refs[k], key=k) for k in hyps) / max(len(hyps), 1)
