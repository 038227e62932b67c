"""Editing captions (the old one kept in the caption history), the trash (delete, restore, list) and
emptying it for good: rows first in one transaction, then the files no other item uses."""
from __future__ import annotations

from ._sqlite_utils import sqlite_utils
from .errors import GalleryError
from .items import Page
from .schema import FEATURES_TABLE, HISTORY_TABLE, LIGHT, SEGMENTS_TABLE, TABLE
from .values import as_id, utc_now


class TrashMixin:
    """Edits, history and trash of :class:`~.gallery.Gallery` (needs ``_write``, the items and the files)."""

    # ------------------------------------------------------------ edits, trash
    def update_caption(self, item_id: int, text: str) -> None:
        """Replace an item's caption and set its ``edited_at``; the old caption goes into its
        :meth:`history` (the search index follows at once).  Setting the same text changes nothing."""
        if not isinstance(text, str):
            raise GalleryError("The caption must be text")
        if as_id(item_id) is None:
            raise GalleryError(f"Item {item_id} does not exist")
        with self._write() as db:
            row = db.execute(f"SELECT caption, deleted_at FROM {TABLE} WHERE id = ?", [as_id(item_id)]).fetchone()
            if row is None:
                raise GalleryError(f"Item {item_id} does not exist")
            if row[1] is not None:
                raise GalleryError(f"Item {item_id} is in the trash: restore it before editing it")
            if row[0] == text:
                return
            now = utc_now()
            db.execute(f"INSERT INTO {HISTORY_TABLE} (item_id, caption, replaced_at) VALUES (?, ?, ?)",
                       [as_id(item_id), row[0], now])
            db.execute(f"UPDATE {TABLE} SET caption = ?, edited_at = ? WHERE id = ?", [text, now, as_id(item_id)])

    def history(self, item_id: int) -> list[dict]:
        """The captions an item had before its edits, oldest first: dicts with ``caption`` and
        ``replaced_at`` (UTC ISO 8601).  Empty for an item never edited (or edited before schema
        version 4 kept history); GalleryError for no such item."""
        item_id_int = as_id(item_id)
        if item_id_int is None or self.db.execute(f"SELECT 1 FROM {TABLE} WHERE id = ?",
                                                  [item_id_int]).fetchone() is None:
            raise GalleryError(f"Item {item_id} does not exist")
        rows = self.db.execute(f"SELECT caption, replaced_at FROM {HISTORY_TABLE} WHERE item_id = ? ORDER BY id",
                               [item_id_int]).fetchall()
        return [{"caption": caption, "replaced_at": at} for caption, at in rows]

    def delete(self, item_id: int) -> bool:
        """Move an item to the trash: it leaves browse, search, exports and :meth:`get` until
        :meth:`restore`; :meth:`empty_trash` removes it for good.  Its files stay until then.

        Returns False if there was no such live item.
        """
        item_id = as_id(item_id)
        if item_id is None:
            return False
        with self._write() as db:
            cursor = db.execute(f"UPDATE {TABLE} SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                                [utc_now(), item_id])
            return cursor.rowcount > 0

    def restore(self, item_id: int) -> bool:
        """Take an item out of the trash; False if it is not in the trash."""
        item_id = as_id(item_id)
        if item_id is None:
            return False
        with self._write() as db:
            cursor = db.execute(f"UPDATE {TABLE} SET deleted_at = NULL WHERE id = ? AND deleted_at IS NOT NULL",
                                [item_id])
            return cursor.rowcount > 0

    def trash(self, page: int = 1, per_page: int = 24) -> Page:
        """The items in the trash, most recently deleted first (each has ``deleted_at``)."""
        page, per_page = self._paging(page, per_page)
        rows = self.db.query(f"SELECT {LIGHT} FROM {TABLE} WHERE deleted_at IS NOT NULL "
                             "ORDER BY deleted_at DESC, id DESC LIMIT ? OFFSET ?",
                             [per_page, (page - 1) * per_page])
        items = [self._row_to_item(r) for r in rows]
        total = self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE deleted_at IS NOT NULL").fetchone()[0]
        return self._page(items, total, page, per_page)

    def empty_trash(self) -> int:
        """Remove every item in the trash for good (rows, segments, history, features, and the image
        and video files no other item uses); return how many items went.

        The rows go in one transaction; the files are removed afterwards under the write lock, so
        a crash in between leaves only unused files (see :meth:`remove_orphan_images`), never an
        item without its file.
        """
        with self._write() as db:
            ids = [r[0] for r in db.execute(f"SELECT id FROM {TABLE} WHERE deleted_at IS NOT NULL")]
            files = db.execute(f"SELECT DISTINCT image_file, video_file FROM {TABLE} "
                               "WHERE deleted_at IS NOT NULL").fetchall()
            self._purge_rows(db, ids)
        self._remove_unused_files(files)
        return len(ids)

    def _purge_rows(self, db: sqlite_utils.Database, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            for table, key in ((SEGMENTS_TABLE, "item_id"), (HISTORY_TABLE, "item_id"),
                               (FEATURES_TABLE, "item_id"), (TABLE, "id")):
                db.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", chunk)
