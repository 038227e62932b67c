"""What find-by-description and more-like-this keep per gallery photo, besides its grid.

The gallery stores each item's encoder grid (`item_features`, float16). Derived from it, and kept in
a cache file next to the database (`cache/retrieval-<model>.npz`, written atomically, rebuilt from the
grids whenever it is missing or unreadable, never the only copy of anything):
- `pooled`: the grid's mean over its cells, L2-normalised, kept as float16 (half the bytes to read and
  scan: 250 MB at 100,000 photos), for more-like-this and the shortlist's first stage;
- `prior`: the photo's mean likelihood over everyday captions (see `prior.py`).
Only the items added since the last use are computed; items gone from the gallery (deleted, in the
trash) are dropped. Items saved without features get them on demand (`backfill_features`): their
stored image is encoded again.
"""
from __future__ import annotations

import re
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from captioner.atomic_write import atomic_path
from captioner.retrieval.prior import photo_priors

if TYPE_CHECKING:
    import torch

    from captioner.retrieval.likelihood import Scorer
    from captioner.retrieval.numpy_likelihood import NumpyScorer

CACHE_DIR = "cache"
#: grids read from the gallery at a time when the cache is updated
CHUNK = 256

Progress = Callable[[str, int, int], None]


def stderr_progress(stage: str, done: int, total: int) -> None:
    """A one-line progress report on stderr (`\\r`-updated; a newline when done)."""
    end = "\n" if done >= total else ""
    print(f"\r{stage}: {done}/{total}", end=end, file=sys.stderr, flush=True)


@dataclass
class PhotoIndex:
    ids: np.ndarray      # (n,) int64, ascending
    pooled: np.ndarray   # (n, C) float16 (float32 accepted), unit length
    prior: np.ndarray    # (n,) float32

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def pooled_half(self) -> torch.Tensor:
        """`pooled` as a float16 torch tensor (made once; no copy when `pooled` is float16 already): the
        scans read half the bytes, and torch's float16 matrix-vector product is about 3x numpy's float32
        one on this CPU. Imports torch: `half_products` uses it only where torch is loaded already."""
        import torch

        half = getattr(self, "_half", None)
        if half is None or half.shape[0] != len(self.ids):
            half = self._half = torch.from_numpy(np.ascontiguousarray(self.pooled, dtype=np.float16))
        return half

    def rows(self, item_ids) -> np.ndarray:
        """Row numbers of these item ids (they must be in the index)."""
        return np.searchsorted(self.ids, np.asarray(item_ids, dtype=np.int64))


def half_products(index: PhotoIndex, vectors) -> np.ndarray:
    """`index.pooled` (float16) times `vectors` ((C,) or (C, k)), rounded to float16 as torch's float16 product
    gives it (float32 out): with torch when the process has loaded it already (`PhotoIndex.pooled_half`), else
    with numpy in float32 over row chunks, so that the torch-free `captioner find` loads no torch for it."""
    if "torch" in sys.modules:
        import torch

        with torch.inference_mode():
            return (index.pooled_half @ torch.as_tensor(np.asarray(vectors), dtype=torch.float16)).float().numpy()
    v = np.asarray(vectors, dtype=np.float16).astype(np.float32)
    out = np.empty((len(index), *v.shape[1:]), dtype=np.float32)
    for s in range(0, len(index), 8192):
        out[s : s + 8192] = np.asarray(index.pooled[s : s + 8192], dtype=np.float32) @ v
    return out.astype(np.float16).astype(np.float32)


def pool(grids: np.ndarray) -> np.ndarray:
    """(n, cells, C) grids -> (n, C) unit-length mean vectors (float32)."""
    pooled = np.asarray(grids, dtype=np.float32).mean(axis=1)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def cache_path(gallery, model_name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_name).strip("-.") or "model"
    return gallery.folder / CACHE_DIR / f"retrieval-{slug}.npz"


def live_feature_ids(gallery, model_name: str) -> list[int]:
    """Live items holding features from `model_name`, ascending (ids only: no grid is read)."""
    from captioner.storage.schema import FEATURES_TABLE, TABLE

    rows = gallery.db.execute(
        f"SELECT f.item_id FROM {FEATURES_TABLE} AS f JOIN {TABLE} ON {TABLE}.id = f.item_id "
        f"WHERE {TABLE}.deleted_at IS NULL AND f.model_name = ? ORDER BY f.item_id", [model_name]).fetchall()
    return [r[0] for r in rows]


def backfill_features(gallery, captioner, progress: Progress | None = None, batch_size: int = 16) -> int:
    """Encode the stored image of every live item without features from this model and store them;
    returns how many were added. Items whose image cannot be read are skipped (one stderr line each)."""
    if gallery.read_only:
        return 0
    missing = gallery.ids_without_features(captioner.name)
    done = 0
    for s in range(0, len(missing), batch_size):
        prepared = []
        for item_id in missing[s : s + batch_size]:
            item = gallery.get(item_id)
            p = captioner.prepare(item["image_path"]) if item else None
            if p is None or p.error:
                print(f"item {item_id}: its image could not be read ({p.error if p else 'gone'}); "
                      "it is left to full-text search", file=sys.stderr)
                continue
            prepared.append((item_id, p))
        if prepared:
            for (item_id, _), grid in zip(prepared, _encode(captioner, [p for _, p in prepared])):
                gallery.set_features(item_id, grid.reshape(-1, grid.shape[-1]), captioner.name)
                done += 1
        if progress:
            progress("computing features of photos saved without them", min(s + batch_size, len(missing)),
                     len(missing))
    return done


def _encode(captioner, prepared) -> np.ndarray:
    """The grids (float32 numpy) of prepared photos: `captioner.runtime.lean.LeanCaptioner`'s arrays through its
    ONNX encoder, or `captioner.pipeline.Captioner`'s tensors through its own."""
    if isinstance(prepared[0].pixels, np.ndarray):
        return captioner.encode(np.stack([p.pixels for p in prepared]))
    import torch

    return captioner.encode(torch.stack([p.pixels for p in prepared])).float().cpu().numpy()


def _read_cache(path: Path, generic_captions: int) -> PhotoIndex | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["generic_captions"]) != generic_captions:
                return None
            index = PhotoIndex(data["ids"].astype(np.int64), data["pooled"].astype(np.float16, copy=False),
                               data["prior"].astype(np.float32))
        if len(index.pooled) != len(index.ids) or len(index.prior) != len(index.ids):
            return None
        return index
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, index: PhotoIndex, generic_captions: int) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path, suffix=".tmp.npz") as tmp:
            np.savez(tmp, ids=index.ids, pooled=np.asarray(index.pooled, dtype=np.float16), prior=index.prior,
                     generic_captions=np.array(generic_captions))
    except OSError:  # a read-only gallery: the index is simply computed again next time
        pass


def _features_model(gallery, item_id: int) -> str | None:
    from captioner.storage.schema import FEATURES_TABLE

    row = gallery.db.execute(f"SELECT model_name FROM {FEATURES_TABLE} WHERE item_id = ?", [int(item_id)]).fetchone()
    return row[0] if row else None


def pooled_index(gallery, model_name: str, *, generic_captions: int = 8,
                 progress: Progress | None = None) -> PhotoIndex:
    """The index of every live item with features from `model_name`, its pooled vectors up to date
    (the priors of items added here are NaN until `photo_index` computes them)."""
    live = np.array(live_feature_ids(gallery, model_name), dtype=np.int64)
    path = cache_path(gallery, model_name)
    cached = _read_cache(path, generic_captions) if path.is_file() else None
    if cached is None or (len(cached) and cached.pooled.ndim != 2):
        cached = PhotoIndex(np.zeros(0, np.int64), np.zeros((0, 0), np.float16), np.zeros(0, np.float32))
    keep = np.isin(cached.ids, live)
    new = live[~np.isin(live, cached.ids)]
    if keep.all() and not len(new):
        return cached
    ids, pooled = [cached.ids[keep]], [cached.pooled[keep]]
    for s in range(0, len(new), CHUNK):
        got, grids = gallery.features([int(i) for i in new[s : s + CHUNK]], model_name=model_name)
        if len(got):
            ids.append(np.asarray(got, np.int64))
            pooled.append(pool(grids).astype(np.float16))
        if progress:
            progress("indexing photos", min(s + CHUNK, len(new)), len(new))
    width = max((p.shape[1] for p in pooled if p.size), default=0)
    pooled = [p if p.size else np.zeros((0, width), np.float16) for p in pooled]
    ids_all = np.concatenate(ids)
    prior = np.concatenate([cached.prior[keep], np.full(len(ids_all) - int(keep.sum()), np.nan, np.float32)])
    order = np.argsort(ids_all, kind="stable")
    index = PhotoIndex(ids_all[order], np.concatenate(pooled)[order], prior[order])
    _write_cache(path, index, generic_captions)
    return index


def photo_index(gallery, captioner, *, generic_captions: int = 8, scorer: Scorer | NumpyScorer | None = None,
                progress: Progress | None = None, backfill: bool = True, priors: bool = True) -> PhotoIndex:
    """The gallery's photo index for this captioner's model, brought up to date (see the module doc).
    `priors=False` leaves the priors of new photos NaN (not needed when the prior weight is 0)."""
    if backfill:
        backfill_features(gallery, captioner, progress)
    index = pooled_index(gallery, captioner.name, generic_captions=generic_captions, progress=progress)
    todo = np.flatnonzero(np.isnan(index.prior))
    if not len(todo) or not priors:
        return index
    scorer = scorer or scorer_for(captioner)
    for s in range(0, len(todo), CHUNK):
        rows = todo[s : s + CHUNK]
        got, grids = gallery.features([int(i) for i in index.ids[rows]], model_name=captioner.name)
        if len(got):
            index.prior[index.rows(got)] = photo_priors(scorer, scorer.photos(grids), vocab_of(captioner),
                                                        generic_captions)
        if progress:
            progress("computing photo priors", min(s + CHUNK, len(todo)), len(todo))
    _write_cache(cache_path(gallery, captioner.name), index, generic_captions)
    return index


_SCORERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scorer_for(captioner) -> Scorer | NumpyScorer:
    """The captioner's likelihood scorer, built once per captioner: a `captioner.pipeline.Captioner`'s `Scorer`
    (its decoder's weights copied and laid out), or for a `captioner.runtime.lean.LeanCaptioner` (no `model`)
    the `NumpyScorer` of its folder's `decoder.safetensors` (no torch)."""
    scorer = _SCORERS.get(captioner)
    if scorer is None:
        if getattr(captioner, "model", None) is None:
            from captioner.retrieval.numpy_likelihood import NumpyScorer

            scorer = NumpyScorer.load(captioner.folder)
        else:
            from captioner.retrieval.likelihood import Scorer

            scorer = Scorer(captioner.model.decoder)
        _SCORERS[captioner] = scorer
    return scorer


def vocab_of(captioner):
    """The captioner's vocabulary (a `Captioner`'s model's, or a `LeanCaptioner`'s own)."""
    model = getattr(captioner, "model", None)
    return model.vocab if model is not None else captioner.vocab
