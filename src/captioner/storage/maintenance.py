"""Checking and repairing a gallery: SQLite's and the search indexes' integrity, rows left by no item,
missing picture and video files, and files no item uses (orphans and abandoned temporary files)."""
from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from . import tempfiles
from ._sqlite_utils import sqlite_utils
from .files import IMAGES_DIR
from .schema import FEATURES_TABLE, FTS_TABLE, HISTORY_TABLE, SEGMENTS_FTS_TABLE, SEGMENTS_TABLE, TABLE


class MaintenanceMixin:
    """Checks and repairs of :class:`~.gallery.Gallery` (needs ``db``, ``_write`` and the folders)."""

    def integrity_check(self) -> str:
        """"ok", or the problems one per line: ``PRAGMA integrity_check``'s, then the search index's."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
        for table, fts, what in ((TABLE, FTS_TABLE, "search index"),
                                 (SEGMENTS_TABLE, SEGMENTS_FTS_TABLE, "segment search index")):
            try:
                self.db.execute(f"INSERT INTO {fts}({fts}) VALUES('integrity-check')")
                problems += self._search_index_drift(table, fts, what)
            except sqlite3.DatabaseError as exc:
                problems.append(f"{what}: {exc}")
        for table, what in ((SEGMENTS_TABLE, "segments: {} segment(s)"),
                            (HISTORY_TABLE, "caption history: {} earlier caption(s)"),
                            (FEATURES_TABLE, "features: {} feature grid(s)")):
            lost = self.db.execute(f"SELECT count(*) FROM {table} WHERE item_id NOT IN "
                                   f"(SELECT id FROM {TABLE})").fetchone()[0]
            if lost:
                problems.append(what.format(lost) + " of no item")
        return "\n".join(problems) or "ok"

    def _search_index_drift(self, table: str = TABLE, fts: str = FTS_TABLE,
                            what: str = "search index") -> list[str]:
        """Rows missing from a search index and entries for no row (FTS5's own check misses both)."""
        missing = self.db.execute(f"SELECT count(*) FROM {table} WHERE id NOT IN "
                                  f"(SELECT id FROM {fts}_docsize)").fetchone()[0]
        extra = self.db.execute(f"SELECT count(*) FROM {fts}_docsize WHERE id NOT IN "
                                f"(SELECT id FROM {table})").fetchone()[0]
        if not (missing or extra):
            return []
        noun = "item" if table == TABLE else "segment"
        return [f"{what}: {missing} {noun}(s) missing from it, {extra} entry(ies) for no {noun}"]

    def rebuild_search_index(self) -> None:
        """Rebuild the full-text indexes from the items and segments tables (repairs a damaged index);
        segments, earlier captions and features left by no item are removed."""
        with self._write() as db:
            for table in (SEGMENTS_TABLE, HISTORY_TABLE, FEATURES_TABLE):
                db.execute(f"DELETE FROM {table} WHERE item_id NOT IN (SELECT id FROM {TABLE})")
            db.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES('rebuild')")
            db.execute(f"INSERT INTO {SEGMENTS_FTS_TABLE}({SEGMENTS_FTS_TABLE}) VALUES('rebuild')")

    def missing_images(self) -> list[int]:
        """Ids of the items whose image file is gone."""
        rows = self.db.execute(f"SELECT id, image_file FROM {TABLE} ORDER BY id").fetchall()
        return [item_id for item_id, rel in rows if not (self.images_dir / rel).is_file()]

    def missing_videos(self) -> list[int]:
        """Ids of the video items whose video file is gone."""
        rows = self.db.execute(f"SELECT id, video_file FROM {TABLE} WHERE kind = 'video' ORDER BY id").fetchall()
        return [item_id for item_id, rel in rows
                if not ((path := self._video_path(rel)) and Path(path).is_file())]

    def orphan_images(self) -> list[Path]:
        """Image and video files no item uses (and stale temp files), without removing them."""
        with self._write() as db:  # under the lock, so no save can be mid-way
            return list(self._orphans(db))

    def remove_orphan_images(self) -> list[Path]:
        """Delete image and video files no item uses (and stale temp files); return them."""
        removed = []
        with self._write() as db:  # under the lock, so no save can be mid-way
            for path in self._orphans(db):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        return removed

    def _orphans(self, db: sqlite_utils.Database) -> Iterator[Path]:
        """Files under images/ and videos/ that no row uses; the caller holds the write lock."""
        used = {f"{IMAGES_DIR}/{r[0]}" for r in db.execute(f"SELECT DISTINCT image_file FROM {TABLE}")}
        used |= {r[0] for r in db.execute(f"SELECT DISTINCT video_file FROM {TABLE} WHERE video_file IS NOT NULL")}
        now = time.time()
        videos_tmp = sorted(self.videos_dir.glob(".tmp-*"))  # videos are copied here first
        for path in [*sorted(self.images_dir.glob("*/*")), *sorted(self.videos_dir.glob("*/*")), *videos_tmp]:
            if not path.is_file():
                continue
            if path.name.startswith(tempfiles.TEMP_PREFIX):
                if not tempfiles.is_abandoned(path, now):
                    continue  # perhaps another process is writing it right now
            elif path.relative_to(self.folder).as_posix() in used:
                continue
            yield path
