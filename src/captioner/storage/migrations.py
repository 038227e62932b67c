"""Schema versions of ``gallery.db`` and the steps from one to the next.

The version lives in SQLite's ``PRAGMA user_version``.  Release 0.1.0 did
not set it, so a database with user_version 0 that already has the items
table is version 1.  :func:`migrate` runs every pending step and sets the
new version in the caller's transaction (``BEGIN IMMEDIATE``): a step that
fails leaves the gallery as it was, and a second process that opens the
gallery at the same moment waits for the lock, then finds nothing to do.

Never change what a released version creates: add a new version instead.
A fresh gallery is made by running every step from version 1, so fresh and
migrated galleries always have the same schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._sqlite_utils import sqlite_utils
from .errors import GalleryError
from .schema import (
    FEATURES_TABLE_SQL,
    FTS_COLUMNS,
    FTS_COLUMNS_V1,
    FTS_TABLE,
    FTS_TOKENIZE,
    HISTORY_TABLE_SQL,
    INDEXES_V4,
    SEGMENTS_COLUMNS_V4,
    SEGMENTS_FTS_COLUMNS,
    SEGMENTS_FTS_COLUMNS_V3,
    SEGMENTS_FTS_TABLE,
    SEGMENTS_TABLE,
    SEGMENTS_TABLE_SQL,
    TABLE,
    column_sql,
    columns_since,
    create_table_sql,
)


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    apply: Callable[[sqlite_utils.Database], None]


def _quoted(names: list[str], prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{name}"' for name in names)


def _fts_sql(table: str = TABLE, fts_table: str = FTS_TABLE, columns: list[str] = FTS_COLUMNS_V1) -> list[str]:
    """A search index and its triggers, written as release 0.1.0 (sqlite-utils 4) wrote the items'."""
    cols, new, old = _quoted(columns), _quoted(columns, "new."), _quoted(columns, "old.")
    insert = f'INSERT INTO "{fts_table}" (rowid, {cols}) VALUES (new.rowid, {new});'
    delete = f'INSERT INTO "{fts_table}" ("{fts_table}", rowid, {cols}) VALUES(\'delete\', old.rowid, {old});'
    return [
        f'CREATE VIRTUAL TABLE "{fts_table}" USING FTS5 (\n    {cols},\n'
        f"    tokenize='{FTS_TOKENIZE}',\n    content=\"{table}\"\n)",
        f'CREATE TRIGGER "{table}_ai" AFTER INSERT ON "{table}" BEGIN\n  {insert}\nEND',
        f'CREATE TRIGGER "{table}_ad" AFTER DELETE ON "{table}" BEGIN\n  {delete}\nEND',
        f'CREATE TRIGGER "{table}_au" AFTER UPDATE ON "{table}" BEGIN\n  {delete}\n  {insert}\nEND',
    ]


def _create_v1(db: sqlite_utils.Database) -> None:
    db.execute(create_table_sql(1))
    db.execute(f'CREATE INDEX "idx_{TABLE}_image_hash"\n    ON "{TABLE}" ("image_hash")')
    for sql in _fts_sql():
        db.execute(sql)


def _add_columns(version: int) -> Callable[[sqlite_utils.Database], None]:
    """A step that adds the columns :data:`~.schema.COLUMNS` marks as new in ``version``."""
    def apply(db: sqlite_utils.Database) -> None:
        for column in columns_since(version):
            db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column_sql(column)}")
    return apply


def _create_v3(db: sqlite_utils.Database) -> None:
    """Video items: items.kind / video_file / duration, the segments table and its search index."""
    _add_columns(3)(db)
    db.execute(SEGMENTS_TABLE_SQL)
    for sql in _fts_sql(SEGMENTS_TABLE, SEGMENTS_FTS_TABLE, SEGMENTS_FTS_COLUMNS_V3):
        db.execute(sql)


def _replace_fts(db: sqlite_utils.Database, table: str, fts_table: str, columns: list[str]) -> None:
    """Drop a search index and its triggers, create them with ``columns``, fill the index from ``table``."""
    for suffix in ("ai", "ad", "au"):
        db.execute(f'DROP TRIGGER IF EXISTS "{table}_{suffix}"')
    db.execute(f'DROP TABLE IF EXISTS "{fts_table}"')
    for sql in _fts_sql(table, fts_table, columns):
        db.execute(sql)
    db.execute(f'INSERT INTO "{fts_table}"("{fts_table}") VALUES(\'rebuild\')')


def _create_v4(db: sqlite_utils.Database) -> None:
    """Tags (searched), confidence, the trash, caption history, stored encoder features."""
    _add_columns(4)(db)
    for column in SEGMENTS_COLUMNS_V4:
        db.execute(f"ALTER TABLE {SEGMENTS_TABLE} ADD COLUMN {column}")
    _replace_fts(db, TABLE, FTS_TABLE, FTS_COLUMNS)
    _replace_fts(db, SEGMENTS_TABLE, SEGMENTS_FTS_TABLE, SEGMENTS_FTS_COLUMNS)
    db.execute(HISTORY_TABLE_SQL)
    db.execute(FEATURES_TABLE_SQL)
    for sql in INDEXES_V4:
        db.execute(sql)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "release 0.1.0: the items table, its image_hash index, the items_fts search index",
              _create_v1),
    Migration(2, "items.edited_at: when the caption was last edited", _add_columns(2)),
    Migration(3, "video items: items.kind, video_file, duration; the segments table and segments_fts",
              _create_v3),
    Migration(4, "items.tags (searched, as are segments.tags), confidence, deleted_at (the trash); "
                 "caption_history; item_features", _create_v4),
)
LATEST = MIGRATIONS[-1].version


def stored_version(db: sqlite_utils.Database) -> int:
    """The schema version of the database (0: empty, nothing created yet)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0 and db[TABLE].exists():
        return 1  # made by release 0.1.0, which did not set user_version
    return version


def check_supported(version: int) -> None:
    """Refuse a database made by a newer captioner (its schema may mean things this code gets wrong)."""
    if version > LATEST:
        raise GalleryError(f"it was made by a newer captioner (gallery schema version {version}; this "
                           f"captioner knows versions up to {LATEST}): upgrade captioner to open it")


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the database up to the last of :data:`MIGRATIONS`; return the version it had.

    The caller holds a ``BEGIN IMMEDIATE`` transaction and commits it (or
    rolls it back if a step fails: then nothing has changed).
    """
    current = stored_version(db)
    check_supported(current)
    for migration in MIGRATIONS:
        if migration.version > current:
            migration.apply(db)
    if current != LATEST:
        db.execute(f"PRAGMA user_version = {LATEST}")
    return current
