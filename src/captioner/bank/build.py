"""Turning caption corpora into a bank: sentences the decoder's vocabulary can say, deduplicated.

A corpus is a TSV file (`photo<TAB>caption`, one header line) as in ../shared/data/caption-text. A caption
enters the bank when every word is in the vocabulary (the decoder can say it as written) and it has
`min_words`..`max_words` words; the same word sequence enters once (the first source that has it wins).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from captioner.model.vocab import Vocab, tokenize


def read_corpus(path: str | Path) -> list[str]:
    """The captions of a `photo<TAB>caption` TSV file (header skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for n, line in enumerate(lines):
        photo, _, caption = line.partition("\t")
        if n == 0 and not caption.strip() or n == 0 and photo in ("image", "image_id"):
            continue
        if caption.strip():
            out.append(caption)
    return out


def sayable(vocab: Vocab, caption: str, min_words: int = 4, max_words: int = 16) -> list[int] | None:
    """The caption's word ids when the vocabulary can say every word and its length fits, else None."""
    words = tokenize(caption)
    if not min_words <= len(words) <= max_words:
        return None
    ids = [vocab.stoi.get(w) for w in words]
    if any(i is None or i in vocab.special_ids for i in ids):
        return None
    return ids


def bank_tokens(vocab: Vocab, corpora: Iterable[tuple[int, Iterable[str]]], min_words: int = 4,
                max_words: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (n, max_words) int16 0-padded, source (n,) uint8) of the sayable, distinct sentences of
    `corpora` ((source index, captions) pairs, in order)."""
    seen: set[tuple[int, ...]] = set()
    rows, sources = [], []
    for source, captions in corpora:
        for caption in captions:
            ids = sayable(vocab, caption, min_words, max_words)
            if ids is None or tuple(ids) in seen:
                continue
            seen.add(tuple(ids))
            rows.append(ids + [0] * (max_words - len(ids)))
            sources.append(source)
    tokens = np.array(rows, dtype=np.int16).reshape(-1, max_words)
    return tokens, np.array(sources, dtype=np.uint8)
