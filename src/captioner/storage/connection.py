"""The gallery's database connections: one per thread (``threading.local``), WAL mode with a busy
timeout, every write in a ``BEGIN IMMEDIATE`` transaction (:meth:`ConnectionMixin._write`); opening a
folder (refusing one that is not a gallery, see :mod:`.opening`), read-only opening, and the schema
migrations run on open (a copy of the database kept first, see :mod:`.backup`)."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from . import backup, migrations, opening
from ._sqlite_utils import sqlite_utils
from .errors import GalleryError
from .schema import TABLE

DB_NAME = "gallery.db"
BUSY_TIMEOUT_S = 60.0


def connect_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro`` when SQLite can share the WAL index there, else
    ``immutable=1`` (a read-only medium: no -wal/-shm files, no locks)."""
    try:
        conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{db_path.as_uri()}?mode=ro&immutable=1", uri=True,
                               isolation_level=None, check_same_thread=False)


def cannot_write(folder: Path, db_path: Path) -> bool:
    """Whether an existing gallery folder (or its database) cannot be written by this process."""
    if not folder.is_dir():
        return False  # missing: it will be created (or fail with its own message)
    if db_path.exists() and not os.access(db_path, os.W_OK):
        return True
    return not os.access(folder, os.W_OK | os.X_OK)


class ConnectionMixin:
    """Connections and transactions of :class:`~.gallery.Gallery` (``folder``, ``db_path``,
    ``images_dir``, ``read_only`` and ``_local``, a ``threading.local``, are set by its ``__init__``)."""

    def _open_read_only(self) -> None:
        if not self.folder.is_dir():
            raise GalleryError("it is not a folder")
        if not self.db_path.is_file():
            raise GalleryError(f"the folder is read-only and holds no {DB_NAME}")
        opening.check_database(self.db.conn, self.db_path, TABLE)
        version = migrations.stored_version(self.db)
        migrations.check_supported(version)
        if version < migrations.LATEST:
            raise GalleryError(f"the folder is read-only and its gallery (schema version {version}) needs an "
                               "upgrade: open it once with write access")

    # ----------------------------------------------------------- connections
    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's (and this process's) sqlite-utils Database."""
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            if self.read_only:
                conn = connect_read_only(self.db_path)
            else:
                conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode
            db = sqlite_utils.Database(conn)
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def close(self) -> None:
        """Close the calling thread's connection (others close when their thread ends)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _check_writable(self) -> None:
        if self.read_only:
            raise GalleryError(f"The gallery at '{self.folder}' is read-only: it can be browsed and searched, "
                               "but nothing can be saved, edited or deleted")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite_utils.Database]:
        """A ``BEGIN IMMEDIATE`` transaction: holds the write lock until it ends."""
        self._check_writable()
        db = self.db
        try:
            db.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise GalleryError("The gallery is busy (another program keeps writing to it); "
                                   "please try again") from exc
            raise
        try:
            yield db
            db.conn.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise

    def _prepare_folder(self) -> None:
        """Refuse a folder that is not a gallery (see :mod:`.opening`); make a new one's database."""
        if not os.path.lexists(self.db_path):
            opening.check_new_folder(self.folder, DB_NAME)
            self.folder.mkdir(parents=True, exist_ok=True)
            opening.create_database(self.db_path, lambda conn: migrations.migrate(sqlite_utils.Database(conn)))
        else:
            opening.check_database(self.db.conn, self.db_path, TABLE)
        self.images_dir.mkdir(exist_ok=True)

    def _init_schema(self) -> None:
        """Refuse a gallery from a newer captioner, switch to WAL, run pending migrations (keeping a copy
        of the database as it was beside it: gallery.db.vN.bak, see :mod:`.backup`)."""
        version = migrations.stored_version(self.db)
        migrations.check_supported(version)
        self._enable_wal()
        if version < migrations.LATEST:
            with self._write() as db:  # the lock makes migrating safe when processes race
                current = migrations.stored_version(db)  # again, under the lock
                if 0 < current < migrations.LATEST:
                    backup.before_migration(self.db_path, current)
                migrations.migrate(db)

    def _enable_wal(self) -> None:
        for attempt in range(50):  # switching to WAL needs a moment without other users
            try:
                self.db.enable_wal()
                return
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.1)

    @property
    def schema_version(self) -> int:
        """The database's schema version (``PRAGMA user_version``); see :mod:`.migrations`."""
        return self.db.execute("PRAGMA user_version").fetchone()[0]
