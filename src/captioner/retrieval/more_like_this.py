"""More like this: the gallery photos whose pooled encoder features are nearest (cosine) to an item's.

A plain scan over the unit-length pooled vectors kept by `index.pooled_index`: one float16
matrix-vector product (benchmarks/bench_library.py measures it against a sqlite-vec index in an
SQLite file: the scan was several times faster, so no second index is kept).
"""
from __future__ import annotations

import numpy as np

from captioner.retrieval.index import PhotoIndex, _features_model, backfill_features, half_products, pooled_index
from captioner.retrieval.search import Match
from captioner.storage.errors import GalleryError


def nearest(pooled, vector, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the `top` unit vectors nearest to `vector` (cosine), best first, and their similarities.
    `pooled`: a numpy array or a torch tensor (e.g. float16, `PhotoIndex.pooled_half`)."""
    if type(pooled).__module__.startswith("torch"):
        import torch

        with torch.inference_mode():
            sims = (pooled @ torch.as_tensor(vector, dtype=pooled.dtype)).float().numpy()
    else:
        sims = pooled @ np.asarray(vector, dtype=pooled.dtype)
    return best_rows(sims, top)


def best_rows(sims: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the `top` highest `sims`, best first (ties: lower row first), and their values."""
    top = min(top, len(sims))
    if top <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    rows = np.argpartition(-sims, top - 1)[:top] if top < len(sims) else np.arange(len(sims))
    rows = rows[np.lexsort((rows, -sims[rows]))]
    return rows, sims[rows]


def similar(gallery, item_id: int, top: int = 10, *, captioner=None, index: PhotoIndex | None = None) -> list[Match]:
    """The `top` items most like `item_id` (itself first, similarity 1), as `Match`es scored by cosine.

    The item needs stored features; with `captioner`, items saved without them get them first."""
    item = gallery.get(item_id)
    if item is None or item.get("deleted_at"):
        raise GalleryError(f"There is no item {item_id} in the gallery")
    if captioner is not None:
        backfill_features(gallery, captioner)
    model_name = _features_model(gallery, item["id"])
    if model_name is None:
        raise GalleryError(f"Item {item_id} has no stored features yet: `captioner find --like {item_id}` "
                           "computes them")
    if index is None:
        index = pooled_index(gallery, model_name)
    row = index.rows([item["id"]])[0]
    if row >= len(index) or index.ids[row] != item["id"]:
        raise GalleryError(f"Item {item_id} has no stored features yet")
    # float16 scan for a few more than asked, then those re-scored exactly (float16 can swap near ties)
    rows, _ = best_rows(half_products(index, index.pooled[row]), top + 32)
    exact, sims = nearest(index.pooled[rows].astype(np.float32), index.pooled[row].astype(np.float32), top)
    rows = rows[exact]
    matches = []
    for r, sim in zip(rows, sims):
        found = gallery.get(int(index.ids[r]))
        if found is not None:
            matches.append(Match(int(index.ids[r]), found.get("original_name") or "", found.get("caption") or "",
                                 float(sim)))
    return matches
