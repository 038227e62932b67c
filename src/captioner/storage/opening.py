"""When a folder may be opened as a gallery, and how a new gallery's database comes to be.

A gallery is never made over something else:

* an existing ``gallery.db`` must hold the gallery's ``items`` table.  A 0-byte or table-less file (an
  emptied database) and an SQLite file of another program are refused: opening them used to add empty
  gallery tables, after which every photo looked orphaned;
* without ``gallery.db``, a new gallery is made only in a new or empty folder: a folder that already
  holds photos or videos under ``images/`` / ``videos/`` (its database was lost) or any other file is
  refused.

Every refusal is a :class:`GalleryError` of one line that says how to recover; nothing is written.
A new database is built completely in a temporary file beside it and linked into place only when done,
so a killed process never leaves a half-made ``gallery.db`` (which would then be refused).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from captioner.atomic_write import atomic_path

from .errors import GalleryError

#: Files a new gallery folder may already hold (made by file managers).
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: Prefix of a database being built by earlier releases (now ``.gallery.db.PID-RANDOM.db``, see
#: :func:`create_database`).
NEW_DB_PREFIX = ".gallery-new-"
MEDIA_DIRS = ("images", "videos")
RECOVER = ("restore a backup with `captioner gallery restore-db BACKUP --gallery DIR` (copies made before "
           "migrations sit beside it as gallery.db.v*.bak)")


def count_media(folder: Path) -> int:
    """How many files there are under ``images/`` and ``videos/``."""
    count = 0
    for sub in MEDIA_DIRS:
        for _root, _dirs, files in os.walk(folder / sub):
            count += len(files)
    return count


def _leftover(name: str, db_name: str) -> bool:
    """A file manager's file, or a database a killed process was building (see :func:`create_database`)."""
    return name in IGNORED_NAMES or name.startswith((NEW_DB_PREFIX, f".{db_name}."))


def check_new_folder(folder: Path, db_name: str) -> None:
    """Refuse to make a gallery in ``folder`` (which has no ``db_name``) unless it is new or empty."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise GalleryError("it is not a folder")
    media = count_media(folder)
    if media:
        raise GalleryError(f"the folder holds {media} photo and video file(s) but no {db_name}: its database "
                           f"is missing, and a new one would see every photo as orphaned. Nothing was created; "
                           f"{RECOVER}, or move the photos elsewhere")
    others = sorted(e.name for e in os.scandir(folder) if not _leftover(e.name, db_name)
                    and not (e.name in MEDIA_DIRS and e.is_dir(follow_symlinks=False)))
    if others:
        shown = ", ".join(repr(n) for n in others[:3]) + (", ..." if len(others) > 3 else "")
        raise GalleryError(f"the folder is not empty (it holds {shown}) and has no {db_name}: a new gallery is "
                           "made only in an empty or new folder. Nothing was created; pass --gallery a new folder")


def check_database(conn: sqlite3.Connection, db_path: Path, table: str) -> None:
    """Refuse an existing database without the gallery's ``table`` (emptied, or another program's)."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    if table in tables:
        return
    media = count_media(db_path.parent)
    holds = f" while the folder holds {media} photo and video file(s)" if media else ""
    if not tables:
        size = db_path.stat().st_size
        what = "is empty (0 bytes)" if size == 0 else "holds no tables"
        new = "" if media else "; if the folder is meant for a new gallery, delete it first"
        raise GalleryError(f"{db_path.name} {what}{holds}: it is not a gallery (its database was emptied or "
                           f"lost). Nothing was changed; {RECOVER}{new}")
    shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
    raise GalleryError(f"{db_path.name} is an SQLite database but not a gallery (it has the tables {shown}). "
                       f"Nothing was changed; pass --gallery a folder of its own, or {RECOVER}")


def create_database(db_path: Path, build: Callable[[sqlite3.Connection], None]) -> None:
    """Make ``db_path`` with ``build(conn)`` (run in one transaction), in WAL mode, all at once.

    The database is built in a temporary file in the same folder and linked to ``db_path`` (see
    :mod:`captioner.atomic_write`), which never replaces one that appeared meanwhile (another process made
    it first: that one is kept)."""
    try:
        with atomic_path(db_path, fsync=True, exclusive=True, suffix=".db") as tmp:
            try:
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    build(conn)
                    conn.execute("COMMIT")
                    conn.execute("PRAGMA journal_mode=WAL")
                finally:
                    conn.close()
            finally:
                for leftover in (f"{tmp}-wal", f"{tmp}-shm", f"{tmp}-journal"):
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)
    except FileExistsError:
        pass  # another process made the gallery at the same moment


#: Under this much free space, a failure to open or write is probably the full disk.
LOW_SPACE = 1 << 20


def low_space_note(folder: Path) -> str:
    """`` (the disk is full: 24 KB free)`` when the file system holding ``folder`` is (nearly) full, else ""."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except (OSError, AttributeError):  # no statvfs on Windows
        return ""
    free = st.f_bavail * st.f_frsize
    if free >= LOW_SPACE:
        return ""
    return f" (the disk is full: {free // 1024} KB free; free some space and try again)"
