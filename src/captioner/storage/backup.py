"""Copies of a gallery's database: ``captioner gallery backup``, the copy kept before every migration,
and ``captioner gallery restore-db``.

Copies are made with SQLite's online backup API, so they are consistent even while the studio or an
import writes to the gallery, and written to a temporary file that is linked into place
(:mod:`captioner.atomic_write`): a backup never overwrites a file, and a failed one leaves nothing behind.  They hold the database only: the
picture and video files under ``images/`` and ``videos/`` are named by their content and never change,
so copying those folders beside the database (any time) completes a backup.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from captioner.atomic_write import atomic_path

from . import migrations
from .errors import GalleryError
from .schema import TABLE


def free_name(folder: Path, stem: str, suffix: str = ".bak") -> Path:
    """``folder/stem+suffix``, or ``stem.1+suffix``, ``stem.2+suffix``... the first that does not exist."""
    for n in range(10_000):
        path = folder / (f"{stem}{suffix}" if n == 0 else f"{stem}.{n}{suffix}")
        if not os.path.lexists(path):
            return path
    raise GalleryError(f"{folder}: too many backups named {stem}*{suffix}; remove old ones")


def _remove_sidecars(db_file: Path) -> None:
    """The journal and WAL files SQLite may leave beside a database it wrote."""
    for suffix in ("-journal", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.unlink(f"{db_file}{suffix}")


def copy_database(source: sqlite3.Connection, dest: Path) -> None:
    """A consistent copy of ``source``'s database at the new file ``dest`` (online backup API, fsynced);
    it never replaces a file there."""
    dest = Path(dest)
    try:
        with atomic_path(dest, fsync=True, exclusive=True) as tmp:
            try:
                with contextlib.closing(sqlite3.connect(tmp)) as target:
                    source.backup(target)
            finally:
                _remove_sidecars(tmp)
    except FileExistsError:
        raise GalleryError(f"'{dest}' already exists: a backup never overwrites a file; give a new name") from None


def backup(gallery, dest: str | os.PathLike) -> Path:
    """``captioner gallery backup DEST``: copy the gallery's database to the new file DEST (a folder:
    ``DEST/gallery-YYYYmmddTHHMMSS.db`` in it); return the file written."""
    dest = Path(dest).expanduser()
    if dest.is_dir():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        dest = free_name(dest, f"gallery-{stamp}", ".db")
    if os.path.lexists(dest):
        raise GalleryError(f"'{dest}' already exists: a backup never overwrites a file; give a new name")
    if not dest.parent.is_dir():
        raise GalleryError(f"'{dest.parent}' is not a folder: give the backup a name in an existing folder")
    try:
        copy_database(gallery.db.conn, dest)
    except OSError as exc:
        raise GalleryError(f"Could not write the backup '{dest}': {exc.strerror or exc}; nothing was written") \
            from exc
    return dest


def before_migration(db_path: Path, version: int) -> Path:
    """Keep a copy of the database, as it is before migrating from ``version``, beside it:
    ``gallery.db.v1.bak`` (or ``gallery.db.v1.1.bak``... when that name is taken).

    Read through a connection of its own: the caller holds the write lock (WAL lets a reader in), and
    SQLite's backup from a connection inside a write transaction waits forever."""
    dest = free_name(db_path.parent, f"{db_path.name}.v{version}")
    with contextlib.closing(sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        copy_database(conn, dest)
    return dest


def describe_backup(path: Path) -> tuple[int, int]:
    """(items, schema version) of a gallery database file; GalleryError when it is not one."""
    if not path.is_file():
        raise GalleryError(f"'{path}' is not a file: give a gallery backup (a .db or .bak file)")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if TABLE not in tables:
                raise GalleryError(f"'{path}' is not a gallery database (it has no {TABLE} table)")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise GalleryError(f"'{path}' is damaged ({check}): choose another backup")
            version = conn.execute("PRAGMA user_version").fetchone()[0] or 1
            count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise GalleryError(f"'{path}' is not a gallery database ({exc})") from exc
    migrations.check_supported(version)
    return count, version


def restore(folder: Path, backup_file: str | os.PathLike, db_name: str) -> Path | None:
    """Put ``backup_file`` in place of ``folder/db_name``; return where the database it replaced was
    saved (None if there was none, or it was empty).

    The replaced database is first copied aside (``gallery.db.before-restore.bak``).  The backup goes in
    with the online backup API when the current file is an SQLite database (so a studio that has it open
    sees the restored one), else (a damaged file) by renaming a fresh copy over it.
    """
    source = Path(backup_file).expanduser()
    describe_backup(source)
    db_path = folder / db_name
    if not folder.is_dir():
        raise GalleryError(f"'{folder}' is not a folder: pass --gallery the gallery folder to restore into")
    saved = None
    if db_path.exists() and db_path.stat().st_size > 0:
        saved = free_name(folder, f"{db_name}.before-restore")
        try:
            with contextlib.closing(sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)) as cur:
                copy_database(cur, saved)
        except sqlite3.DatabaseError:  # not a database at all: keep its bytes
            shutil.copy2(db_path, saved)
    with contextlib.closing(sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)) as src:
        try:
            with contextlib.closing(sqlite3.connect(db_path)) as dest:
                dest.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails if it is not SQLite
                src.backup(dest)
        except sqlite3.DatabaseError:
            with atomic_path(db_path) as tmp:
                try:
                    with contextlib.closing(sqlite3.connect(tmp)) as fresh:
                        src.backup(fresh)
                finally:
                    _remove_sidecars(tmp)
                for stale in (f"{db_path}-wal", f"{db_path}-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(stale)
    return saved
