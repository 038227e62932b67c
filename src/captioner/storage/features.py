"""Stored encoder features: an item's (N*N, C) grid kept as little-endian float16 with the name of
the model that made it, read back whole or pooled (for find-by-meaning and more-like-this)."""
from __future__ import annotations

import json
from typing import Any

from ._sqlite_utils import sqlite_utils
from .errors import GalleryError
from .items import LIVE
from .schema import FEATURES_TABLE, TABLE
from .values import as_id


def features_blob(grid: Any) -> tuple[str, str, bytes]:
    """Encoder features as (dtype, shape text, little-endian float16 bytes); GalleryError if unusable."""
    import numpy as np

    if hasattr(grid, "detach"):  # a torch tensor
        grid = grid.detach().cpu().float().numpy()
    try:
        array = np.asarray(grid, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The features must be an array of numbers: {exc}; the gallery was not changed") from exc
    if array.ndim not in (1, 2, 3) or array.size == 0:
        raise GalleryError(f"The features must be a non-empty 1-3 dimensional array, not shape {array.shape}; "
                           "the gallery was not changed")
    if not np.isfinite(array).all():
        raise GalleryError("The features hold NaN or infinite values; the gallery was not changed")
    half = np.ascontiguousarray(array.astype("<f2"))
    return "float16", ",".join(str(n) for n in half.shape), half.tobytes()


class FeaturesMixin:
    """Features of :class:`~.gallery.Gallery` (needs ``db`` and ``_write``)."""

    # ---------------------------------------------------------------- features
    @staticmethod
    def _feature_model(model_name: Any) -> str:
        if not isinstance(model_name, str) or not model_name.strip():
            raise GalleryError("Features need the name of the model that made them (model_name); "
                               "the gallery was not changed")
        return model_name

    @staticmethod
    def _store_features(db: sqlite_utils.Database, item_id: int, dtype: str, shape: str, blob: bytes,
                        model_name: str) -> None:
        db.execute(f"INSERT OR REPLACE INTO {FEATURES_TABLE} (item_id, model_name, dtype, shape, grid) "
                   "VALUES (?, ?, ?, ?, ?)", [item_id, model_name, dtype, shape, blob])

    def set_features(self, item_id: int, grid: Any, model_name: str) -> None:
        """Store an item's encoder features (e.g. the (N*N, C) grid) as float16, replacing any."""
        model_name = self._feature_model(model_name)
        dtype, shape, blob = features_blob(grid)
        if as_id(item_id) is None:
            raise GalleryError(f"Item {item_id} does not exist")
        with self._write() as db:
            if db.execute(f"SELECT 1 FROM {TABLE} WHERE id = ?", [as_id(item_id)]).fetchone() is None:
                raise GalleryError(f"Item {item_id} does not exist")
            self._store_features(db, as_id(item_id), dtype, shape, blob, model_name)

    def features(self, item_ids: list[int] | None = None, *, model_name: str | None = None,
                 pooled: bool = False) -> tuple[list[int], Any]:
        """Stored features of live items: (ids, float16 array (len(ids), *shape)), ids ascending.

        ``item_ids``: only these (None: all that have features); ``model_name``: only those made by
        that model.  ``pooled``: the mean over the first axis of each grid (float32, (n, C)), read
        one item at a time.  Items without features are left out; features of different shapes
        raise GalleryError (pass ``model_name``).
        """
        import numpy as np

        where, params = [LIVE.format(id="f.item_id")], []
        if model_name is not None:
            where.append("f.model_name = ?")
            params.append(model_name)
        if item_ids is not None:
            wanted = sorted({i for i in (as_id(x) for x in item_ids) if i is not None})
            if not wanted:
                return [], np.zeros((0,), np.float32 if pooled else np.float16)
            where.append("f.item_id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(wanted))
        rows = self.db.execute(
            f"SELECT f.item_id, f.dtype, f.shape, f.grid FROM {FEATURES_TABLE} AS f "
            f"WHERE {' AND '.join(where)} ORDER BY f.item_id", params)
        ids, arrays, first_shape = [], [], None
        for item_id, dtype, shape_text, blob in rows:
            shape = tuple(int(n) for n in shape_text.split(",")) if shape_text else ()
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise GalleryError(f"Stored features differ in shape ({first_shape} and {shape}, item "
                                   f"{item_id}): ask for one model_name")
            array = np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
            ids.append(item_id)
            arrays.append(array.astype(np.float32).mean(axis=0) if pooled else array)
        if not arrays:
            return [], np.zeros((0,), np.float32 if pooled else np.float16)
        return ids, np.stack(arrays).astype(np.float32 if pooled else np.float16, copy=False)

    def ids_without_features(self, model_name: str) -> list[int]:
        """Live items that have no features from ``model_name`` (none, or another model's), ascending."""
        rows = self.db.execute(
            f"SELECT id FROM {TABLE} WHERE deleted_at IS NULL AND id NOT IN "
            f"(SELECT item_id FROM {FEATURES_TABLE} WHERE model_name = ?) ORDER BY id", [model_name])
        return [r[0] for r in rows]
