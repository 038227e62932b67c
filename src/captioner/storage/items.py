"""Reading items: a row becomes an item dict (absolute paths, candidates with their attention maps,
tags, a video's segments), one item by id, every item, and pages of them (:class:`Page`)."""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import GalleryError
from .schema import FULL, ITEM_COLUMNS, LIGHT, SEGMENTS_TABLE, TABLE
from .values import as_id

MAX_PER_PAGE = 1000
#: Pages past this are empty anyway; the cap keeps OFFSET within SQLite's 64-bit integers.
MAX_PAGE = 10**9
#: Live items (not in the trash), read from the deleted_at index: a row's deleted_at is stored after its
#: attention maps, so reading it from the row would walk their overflow pages.
LIVE = f"{{id}} NOT IN (SELECT id FROM {TABLE} WHERE deleted_at IS NOT NULL)"


@dataclass
class Page:
    """One page of gallery items (dicts shaped like :meth:`Gallery.get`).

    Page items leave out the candidates' ``attention`` maps (they can be
    megabytes per page) and video items' ``segments``; :meth:`Gallery.get`
    returns them.  In search pages every video item has ``matched_segments``.
    ``pages`` is at least 1, so "page 1 of 1" also reads well for no results.
    ``match_all`` is False when a search found nothing containing every word
    and fell back to items containing any of them.  Search pages also give
    every item ``highlight`` (its caption, HTML-escaped, the words that match
    in ``<mark>..</mark>``) and ``matched_in`` ("caption", "tags", "name" or
    "candidates": where the search found it).
    """

    items: list[dict] = field(default_factory=list)
    total: int = 0
    page: int = 1
    per_page: int = 24
    pages: int = 1
    match_all: bool = True


def merge_attention(candidates_json: str | None, attention_json: str | None) -> list[dict]:
    """The stored candidates, with their attention maps put back when there are any."""
    candidates = json.loads(candidates_json or "[]")
    if attention_json:
        for cand, attention in zip(candidates, json.loads(attention_json)):
            if attention is not None:
                cand["attention"] = attention
    return candidates


class ItemsMixin:
    """Items of :class:`~.gallery.Gallery` as dicts (needs ``db``, ``images_dir`` and ``_video_path``)."""

    # ------------------------------------------------------------------ rows
    def _row_to_item(self, row: dict) -> dict:
        """Row -> item dict; attention maps are merged back if the row has them.

        The stored image path is relative to ``images/``; the item's
        ``image_path`` is made absolute from this gallery's folder.
        """
        item = {column.item_key: row[column.name] for column in ITEM_COLUMNS}
        item["image_path"] = str(self.images_dir / row["image_file"])
        item["video_path"] = self._video_path(row["video_file"])
        item["candidates"] = merge_attention(row["candidates"], row.get("attention"))
        item["tags"] = json.loads(row["tags"]) if row.get("tags") else []
        return item

    def _with_segments(self, item: dict) -> dict:
        """A full item: video items get their ``segments`` (idx, start, end, caption, candidates)."""
        if item.get("kind") == "video":
            item["segments"] = self._segments(item["id"])
        return item

    def _segments(self, item_id: int) -> list[dict]:
        rows = self.db.execute(f'SELECT idx, start, "end", caption, candidates, tags FROM {SEGMENTS_TABLE} '
                               "WHERE item_id = ? ORDER BY idx", [item_id]).fetchall()
        return [{"idx": idx, "start": start, "end": end, "caption": caption,
                 "candidates": json.loads(candidates or "[]"), "tags": json.loads(tags or "[]")}
                for idx, start, end, caption, candidates, tags in rows]

    def get(self, item_id: int, *, include_trash: bool = False) -> dict | None:
        """The item, or None if there is none (or it is in the trash, unless ``include_trash``).

        Keys: id, image_hash, image_path (absolute str), original_name, width,
        height, caption, candidates (list of dicts, with attention maps),
        beam_size, model_name, saved_at and edited_at (UTC ISO 8601; None if
        the caption was never edited), kind ('photo' or 'video'), video_path
        (absolute str) and duration (seconds; both None for photos), tags (list
        of {label, score}; empty if none were stored), confidence (0..1 or
        None), deleted_at (None, or when it went to the trash).  Video
        items also have ``segments``: dicts with idx, start, end, caption,
        candidates (without attention) and tags, in order.
        """
        item_id = as_id(item_id)
        if item_id is None:
            return None
        live = "" if include_trash else " AND deleted_at IS NULL"
        rows = list(self.db.query(f"SELECT {FULL} FROM {TABLE} WHERE id = ?{live}", [item_id]))
        return self._with_segments(self._row_to_item(rows[0])) if rows else None

    @staticmethod
    def _paging(page: Any, per_page: Any) -> tuple[int, int]:
        try:
            page, per_page = int(page), int(per_page)
        except (TypeError, ValueError) as exc:
            raise GalleryError("Page and page size must be whole numbers") from exc
        return min(max(page, 1), MAX_PAGE), min(max(per_page, 1), MAX_PER_PAGE)

    @staticmethod
    def _page(items: list[dict], total: int, page: int, per_page: int,
              match_all: bool = True) -> Page:
        return Page(items, total, page, per_page, max(1, math.ceil(total / per_page)), match_all)

    def _light_items(self, ids: list[int]) -> list[dict]:
        """Page items (no attention maps) for ``ids``, in that order."""
        if not ids:
            return []
        rows = self.db.query(f"SELECT {LIGHT} FROM {TABLE} WHERE id IN ({', '.join('?' * len(ids))})", ids)
        by_id = {row["id"]: self._row_to_item(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def count(self) -> int:
        """Number of live items (not counting the trash)."""
        return self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE deleted_at IS NULL").fetchone()[0]

    def iter_items(self, *, include_trash: bool = False) -> Iterator[dict]:
        """Every live item (and those in the trash if asked), oldest first (streams)."""
        live = "" if include_trash else " WHERE deleted_at IS NULL"
        for row in self.db.query(f"SELECT {FULL} FROM {TABLE}{live} ORDER BY id"):
            yield self._with_segments(self._row_to_item(row))
