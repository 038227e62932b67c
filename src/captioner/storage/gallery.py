"""The captioned-image gallery: SQLite (via sqlite-utils) plus a folder of images.

Layout of a gallery folder::

    gallery.db                 items table, items_fts full-text index (+ WAL files);
                               segments table, segments_fts index (video items);
                               caption_history (earlier captions), item_features (encoder grids)
    images/ab/abcdef....jpg    each distinct image once, named by the sha256 of its bytes
    videos/ab/abcdef....mp4    each distinct video once, named the same way

Deleting moves an item to the trash (``deleted_at`` set): it leaves browse, search, exports and
:meth:`Gallery.get` until :meth:`Gallery.restore`; :meth:`Gallery.empty_trash` removes it and the
files no other item uses.  Editing a caption keeps the old one (:meth:`Gallery.history`).  Saving
the same photo with the same caption again raises :class:`DuplicateItemError`, and so does saving the
same video (the same bytes) with the same shots (times and captions) again.

A video item (``kind`` 'video', :meth:`Gallery.save_video`) is an item like a
photo, its picture a poster frame (or a placeholder), plus its video file and
its captioned segments (start, end, caption, candidates), which search finds.

The database stores image paths relative to ``images/`` only, so a gallery
folder can be moved or copied: items get their absolute ``image_path`` from
the folder they were opened from.  The table is described once, in
:mod:`.schema`; its versions (``PRAGMA user_version``) and the steps between
them are in :mod:`.migrations`, run when a gallery is opened.

Concurrency: every thread gets its own SQLite connection (``threading.local``),
the database runs in WAL mode with a busy timeout, and every write happens
in a ``BEGIN IMMEDIATE`` transaction, so several threads and processes can
save at once.  An image file is written to a temporary file and moved into
place with ``os.replace`` *before* its row is inserted; a crash in between
leaves only an unreferenced file, which :meth:`Gallery.remove_orphan_images`
cleans up.  Image files are only ever deleted while holding the database
write lock, and :meth:`Gallery.save` checks the file is still there under
that same lock, so a delete racing a save of the same picture cannot leave
a row without its file.

Where each part lives (``Gallery`` is a thin front: one mixin per job)::

    connection.py   connections, transactions, opening a folder, migrations on open
    files.py        the content-addressed picture and video files
    values.py       checking what a caller hands the gallery
    saving.py       save, save_result (a CaptionResult), save_video
    items.py        rows as item dicts, get, iter_items, Page
    queries.py      browse and search SQL, highlights
    trash.py        caption edits and history, the trash
    features.py     stored encoder features
    export.py       JSON / CSV export
    maintenance.py  integrity checks, missing files, orphans, rebuilding the search index

No GUI code here: the Gradio app and the CLI both sit on top of this module.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

from . import opening, tempfiles
from .connection import BUSY_TIMEOUT_S, DB_NAME, ConnectionMixin, cannot_write
from .errors import DuplicateItemError, GalleryError
from .export import ExportMixin
from .features import FeaturesMixin
from .files import IMAGES_DIR, VIDEOS_DIR, FilesMixin
from .items import MAX_PAGE, MAX_PER_PAGE, ItemsMixin, Page
from .maintenance import MaintenanceMixin
from .queries import KINDS, MAX_MATCHED_SEGMENTS, SORTS, QueriesMixin
from .saving import SavingMixin
from .trash import TrashMixin
from .values import MAX_TAGS, MAX_VIDEO_CAPTION, VIDEO_CAPTION_SEPARATOR

__all__ = ["DuplicateItemError", "Gallery", "GalleryError", "Page", "default_gallery_dir"]
# the gallery's constants, as they were all importable from here
__all__ += ["BUSY_TIMEOUT_S", "DB_NAME", "IMAGES_DIR", "KINDS", "MAX_MATCHED_SEGMENTS", "MAX_PAGE", "MAX_PER_PAGE",
            "MAX_TAGS", "MAX_VIDEO_CAPTION", "SORTS", "STALE_TEMP_S", "VIDEOS_DIR", "VIDEO_CAPTION_SEPARATOR"]

#: Temporary image files older than this are assumed abandoned by a crash (see :mod:`.tempfiles`).
STALE_TEMP_S = tempfiles.STALE_TEMP_S


def default_gallery_dir() -> Path:
    """Where the gallery lives by default (the folder is not created here).

    Linux and others: ``$XDG_DATA_HOME/captioner/gallery``, else
    ``~/.local/share/captioner/gallery``; macOS: ``~/Library/Application
    Support/captioner/gallery``; Windows: ``%LOCALAPPDATA%\\captioner\\gallery``.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.environ.get("APPDATA")
        root = Path(base) if base else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        root = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return root / "captioner" / "gallery"


class Gallery(ConnectionMixin, FilesMixin, ItemsMixin, SavingMixin, QueriesMixin, TrashMixin, FeaturesMixin,
              ExportMixin, MaintenanceMixin):
    """A folder holding ``gallery.db`` and ``images/``; created if missing.

    Safe to share one instance between threads (each thread gets its own
    connection) and to open the same folder from several processes.
    """

    def __init__(self, folder: str | os.PathLike, read_only: bool | None = None):
        """``read_only``: open for browsing only (None: when the folder or its database cannot be
        written, e.g. a read-only mount or another user's files). Saving, editing and deleting
        then raise a GalleryError that says so."""
        self.folder = Path(folder).expanduser().resolve()
        self.images_dir = self.folder / IMAGES_DIR
        self.videos_dir = self.folder / VIDEOS_DIR
        self.db_path = self.folder / DB_NAME
        self._local = threading.local()
        self.read_only = cannot_write(self.folder, self.db_path) if read_only is None else read_only
        try:
            if self.read_only:
                self._open_read_only()
            else:
                self._prepare_folder()
                self._init_schema()
                tempfiles.remove_abandoned(self.images_dir, self.videos_dir)  # left by killed processes
        except (OSError, sqlite3.Error, GalleryError) as exc:
            self.close()
            note = "" if isinstance(exc, GalleryError) else opening.low_space_note(self.folder)
            raise GalleryError(f"Could not open the gallery at '{self.folder}': {exc}{note}") from exc

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
