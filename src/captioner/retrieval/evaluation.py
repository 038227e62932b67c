"""Measuring find-by-description: a captioned photo set with its encoder grids, full-text rankings
through a real gallery, likelihood score matrices, recall@k.

Used by scripts/eval_retrieval.py (the Flickr8k figures) and tests/test_retrieval.py.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from captioner.atomic_write import atomic_path
from captioner.retrieval.likelihood import PhotoBatch, Scorer, query_tokens


@dataclass
class PhotoSet:
    """Photos with what the gallery would hold for them: encoder grids (float16) and beam candidates."""

    names: list[str]
    paths: list[str]
    grids: np.ndarray                 # (n, cells, C) float16
    candidates: list[list[str]]       # beam candidates' captions, best first

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".tmp.npz") as tmp:
            np.savez(tmp, grids=self.grids, meta=np.array(json.dumps(
                {"names": self.names, "paths": self.paths, "candidates": self.candidates})))

    @classmethod
    def load(cls, path: str | Path) -> PhotoSet:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(meta["names"], meta["paths"], data["grids"], meta["candidates"])


def build_photo_set(captioner, paths: Sequence[str | Path], batch_size: int = 16,
                    progress: Callable[[int, int], None] | None = None) -> PhotoSet:
    """Encode and caption (the model's decoding) every photo; a photo that cannot be read is an error."""
    names, grids, candidates = [], [], []
    paths = [str(p) for p in paths]
    for s in range(0, len(paths), batch_size):
        prepared = [captioner.prepare(p) for p in paths[s : s + batch_size]]
        bad = [p.error for p in prepared if p.error]
        if bad:
            raise ValueError(bad[0])
        feats = captioner.encode(torch.stack([p.pixels for p in prepared]))
        for cands in captioner.decode(feats):
            candidates.append([c.caption for c in cands])
        grids.append(feats.flatten(1, 2).to(torch.float16).numpy())
        names += [Path(p).name for p in paths[s : s + batch_size]]
        if progress:
            progress(min(s + batch_size, len(paths)), len(paths))
    return PhotoSet(names, paths, np.concatenate(grids), candidates)


def cached_photo_set(captioner, paths: Sequence[str | Path], cache: str | Path | None, **kw) -> PhotoSet:
    """`build_photo_set`, kept in (and read back from) the `.npz` file `cache` when given."""
    if cache is not None and Path(cache).is_file():
        found = PhotoSet.load(cache)
        if found.paths == [str(p) for p in paths]:
            return found
    photo_set = build_photo_set(captioner, paths, **kw)
    if cache is not None:
        photo_set.save(cache)
    return photo_set


def fulltext_rankings(photo_set: PhotoSet, queries: Sequence[str], top: int = 10,
                      folder: str | Path | None = None) -> list[list[int]]:
    """For each query, the photo indexes the gallery's own full-text search (`Gallery.search`) ranks first
    (at most `top`), in a temporary gallery holding every photo's caption and beam candidates. The rows
    are inserted in one transaction (the search index follows through the gallery's own triggers) with
    no picture files: only the search is measured here, not saving."""
    from captioner.storage import Gallery
    from captioner.storage.schema import TABLE

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        gallery = Gallery(tmp)
        records = [{"image_hash": f"{i:064x}", "image_file": f"{i:064x}.jpg", "original_name": name,
                    "width": 4, "height": 4, "caption": cands[0],
                    "alternatives": "\n".join(dict.fromkeys(c for c in cands[1:] if c != cands[0])),
                    "candidates": json.dumps([{"caption": c} for c in cands]), "beam_size": len(cands),
                    "model_name": "eval", "saved_at": "2026-01-01T00:00:00+00:00"}
                   for i, (name, cands) in enumerate(zip(photo_set.names, photo_set.candidates))]
        with gallery._write() as db:
            row_of = {db[TABLE].insert(r).last_pk: i for i, r in enumerate(records)}
        out = []
        for q in queries:
            try:
                page = gallery.search(q, page=1, per_page=top)
                out.append([row_of[item["id"]] for item in page.items] if page.total else [])
            except Exception:  # a query with no searchable word finds nothing
                out.append([])
        gallery.close()
    return out


def likelihood_matrix(scorer: Scorer, photos: PhotoBatch, queries: Sequence[str], vocab,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(n_queries, n_photos) length-normalised log-likelihoods."""
    out = np.empty((len(queries), len(photos)), np.float32)
    for n, q in enumerate(queries):
        out[n] = scorer.text_likelihood(photos, query_tokens(vocab, q))
        if progress:
            progress(n + 1, len(queries))
    return out


def rank_of(scores: np.ndarray, target: int) -> int:
    """0-based rank of `target` in `scores` (higher is better; ties count against it)."""
    return int((scores > scores[target]).sum() + (scores == scores[target]).sum() - 1)


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose photo is within the first k (a rank of None: not found)."""
    return float(np.mean([r is not None and r < k for r in ranks])) if len(ranks) else 0.0
