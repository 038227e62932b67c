"""The gallery's ``items`` table, described once.

:data:`COLUMNS` is the one list that the table definition, the column lists
of every ``SELECT``, the export fields and the item dicts
are all built from.  A column's ``since`` is the schema version (see
:mod:`captioner.storage.migrations`) that added it: adding a column means
appending it here with the next version number and adding that version to
the migrations, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE = "items"
FTS_TABLE = f"{TABLE}_fts"
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"

#: What a column is read for.
ITEM = "item"      # an item field, read for every page and item
DETAIL = "detail"  # read for single items and exports only (big)
SEARCH = "search"  # written for the search index, never read back


@dataclass(frozen=True)
class Column:
    name: str
    decl: str                 # SQL type and constraints
    doc: str = ""             # kept as an SQL comment in the table definition
    use: str = ITEM
    key: str = ""             # the item dict key, when it is not the column name
    since: int = 1            # the schema version that added the column

    @property
    def item_key(self) -> str:
        return self.key or self.name


COLUMNS: tuple[Column, ...] = (
    Column("id", "INTEGER PRIMARY KEY AUTOINCREMENT", "ids of deleted items are never reused"),
    Column("image_hash", "TEXT NOT NULL", "sha256 of the stored bytes"),
    Column("image_file", "TEXT NOT NULL", "path under images/, never absolute", key="image_path"),
    Column("original_name", "TEXT", "name of the file the image came from"),
    Column("width", "INTEGER"),
    Column("height", "INTEGER"),
    Column("caption", "TEXT NOT NULL"),
    Column("alternatives", "TEXT", "other candidate captions, for search", use=SEARCH),
    Column("candidates", "TEXT", "JSON list of beam candidates, no attention"),
    Column("beam_size", "INTEGER"),
    Column("model_name", "TEXT"),
    Column("saved_at", "TEXT", "UTC ISO 8601"),
    Column("attention", "TEXT", "JSON list, one map (or null) per candidate", use=DETAIL),
    Column("edited_at", "TEXT", "UTC ISO 8601 of the last caption edit; NULL: never edited", since=2),
    Column("kind", "TEXT NOT NULL DEFAULT 'photo'", "'photo' or 'video' (its segments: the segments table)",
           since=3),
    Column("video_file", "TEXT", "video items: path under videos/, relative to the gallery folder",
           key="video_path", since=3),
    Column("duration", "REAL", "video items: length in seconds", since=3),
    Column("tags", "TEXT", "JSON list of {label, score}: what is in the picture", since=4),
    Column("confidence", "REAL", "calibrated confidence of the caption, 0..1; NULL: unknown", since=4),
    Column("deleted_at", "TEXT", "UTC ISO 8601 when it went to the trash; NULL: a live item", since=4),
    Column("tag_text", "TEXT", "the tags' labels, one a line, for search", use=SEARCH, since=4),
)

#: The columns that become item dict fields.
ITEM_COLUMNS = [c for c in COLUMNS if c.use == ITEM]
#: Columns read for browse/search pages: everything but the big attention maps.
LIGHT = ", ".join(c.name for c in ITEM_COLUMNS)
#: Columns read for single items and exports.
FULL = ", ".join(c.name for c in COLUMNS if c.use in (ITEM, DETAIL))
#: The keys of an item dict, in order; also the CSV export's columns.
ITEM_KEYS = [c.item_key for c in ITEM_COLUMNS]
EXPORT_FIELDS = ITEM_KEYS
#: The CSV export's columns: the item fields, then video items' segments (a JSON string column).
CSV_FIELDS = [*EXPORT_FIELDS, "segments"]
#: The columns of the full-text index as schema version 1 made it (release 0.1.0).
FTS_COLUMNS_V1 = ["caption", "alternatives", "original_name"]
#: The columns of the full-text index, in the index's order (since schema version 4: the tags too).
FTS_COLUMNS = [*FTS_COLUMNS_V1, "tag_text"]
#: bm25 weights for the FTS columns above: the caption counts most.
BM25_WEIGHTS = "bm25(10.0, 2.0, 3.0, 5.0)"
#: What :meth:`Gallery.search` reports as ``matched_in`` for each index column (``alternatives``: the
#: beam candidates the user did not choose).  An item whose saved caption matches ranks first.
MATCHED_IN = {"caption": "caption", "tag_text": "tags", "original_name": "name", "alternatives": "candidates"}


# ------------------------------------------------------------ video segments (schema version 3)
SEGMENTS_TABLE = "segments"
SEGMENTS_FTS_TABLE = f"{SEGMENTS_TABLE}_fts"
#: The columns of the segments' full-text index as schema version 3 made it.
SEGMENTS_FTS_COLUMNS_V3 = ["caption", "alternatives"]
#: The columns of the segments' full-text index, in the index's order (since version 4: tags too).
SEGMENTS_FTS_COLUMNS = [*SEGMENTS_FTS_COLUMNS_V3, "tag_text"]
#: bm25 weights for the segment index, on the same scale as the items' (caption 10, candidates 2, tags 5).
SEGMENTS_BM25_WEIGHTS = "bm25(10.0, 2.0, 5.0)"
#: Columns schema version 4 added to the segments table.
SEGMENTS_COLUMNS_V4 = ("tags TEXT", "tag_text TEXT")
#: Columns read for a video item's segments (``end`` is an SQL keyword: always quoted).
SEGMENT_FIELDS = ("idx", "start", "end", "caption", "candidates")
SEGMENTS_TABLE_SQL = f"""CREATE TABLE {SEGMENTS_TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL REFERENCES {TABLE}(id) ON DELETE CASCADE,  -- deleted with the item
    idx INTEGER NOT NULL,  -- segment number in the video, from 0
    start REAL NOT NULL,  -- seconds from the start of the video
    "end" REAL NOT NULL,
    caption TEXT NOT NULL,
    alternatives TEXT,  -- other candidate captions, for search
    candidates TEXT,  -- JSON list of beam candidates, no attention
    UNIQUE (item_id, idx)
)"""


# ------------------------------------------------------------ schema version 4
HISTORY_TABLE = "caption_history"
HISTORY_TABLE_SQL = f"""CREATE TABLE {HISTORY_TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL REFERENCES {TABLE}(id) ON DELETE CASCADE,
    caption TEXT NOT NULL,  -- the caption as it was before an edit
    replaced_at TEXT NOT NULL  -- UTC ISO 8601 of the edit that replaced it
)"""
FEATURES_TABLE = "item_features"
FEATURES_TABLE_SQL = f"""CREATE TABLE {FEATURES_TABLE} (
    item_id INTEGER PRIMARY KEY REFERENCES {TABLE}(id) ON DELETE CASCADE,
    model_name TEXT NOT NULL,  -- the encoder that made them
    dtype TEXT NOT NULL,  -- numpy dtype of grid, e.g. 'float16'
    shape TEXT NOT NULL,  -- e.g. '81,1280' (grid cells, channels)
    grid BLOB NOT NULL  -- the array's bytes, C order, little-endian
)"""
#: Indexes schema version 4 added: history by item; the trash; the orders and the model filter of browse.
INDEXES_V4 = (
    f'CREATE INDEX "idx_{HISTORY_TABLE}_item_id" ON "{HISTORY_TABLE}" ("item_id")',
    f'CREATE INDEX "idx_{TABLE}_deleted_at" ON "{TABLE}" ("deleted_at")',
    f'CREATE INDEX "idx_{TABLE}_saved_at" ON "{TABLE}" ("saved_at")',
    f'CREATE INDEX "idx_{TABLE}_model_saved_at" ON "{TABLE}" ("model_name", "saved_at")',
    f'CREATE INDEX "idx_{TABLE}_confidence" ON "{TABLE}" ("confidence")',
    f'CREATE INDEX "idx_{TABLE}_caption_nocase" ON "{TABLE}" ("caption" COLLATE NOCASE)',
)


def columns_since(version: int) -> list[Column]:
    """The columns that schema ``version`` added."""
    return [c for c in COLUMNS if c.since == version]


def column_sql(column: Column) -> str:
    return f"{column.name} {column.decl}"


def create_table_sql(version: int) -> str:
    """``CREATE TABLE`` for the items table as schema ``version`` had it."""
    columns = [c for c in COLUMNS if c.since <= version]
    lines = []
    for i, column in enumerate(columns):
        comma = "," if i < len(columns) - 1 else ""
        comment = f"  -- {column.doc}" if column.doc else ""
        lines.append(f"    {column_sql(column)}{comma}{comment}")
    return f"CREATE TABLE {TABLE} (\n" + "\n".join(lines) + "\n)"
