"""The captioned-image gallery: SQLite (via sqlite-utils) plus a folder of images.

Layout of a gallery folder::

    gallery.db                 items table, items_fts full-text index (+ WAL files)
    images/ab/abcdef....jpg    each distinct image once, named by the sha256 of its bytes

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

No GUI code here: the Gradio app and the CLI both sit on top of this module.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils
from PIL import Image

from . import migrations
from .errors import GalleryError
from .fts_query import to_fts_query
from .schema import BM25_WEIGHTS, EXPORT_FIELDS, FTS_TABLE, FULL, ITEM_COLUMNS, LIGHT, TABLE

__all__ = ["Gallery", "GalleryError", "Page", "default_gallery_dir"]

DB_NAME = "gallery.db"
IMAGES_DIR = "images"
BUSY_TIMEOUT_S = 60.0
MAX_PER_PAGE = 1000
#: Pages past this are empty anyway; the cap keeps OFFSET within SQLite's 64-bit integers.
MAX_PAGE = 10**9
#: Temporary image files older than this are assumed abandoned by a crash.
STALE_TEMP_S = 3600
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif",
               "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


@dataclass
class Page:
    """One page of gallery items (dicts shaped like :meth:`Gallery.get`).

    Page items leave out the candidates' ``attention`` maps (they can be
    megabytes per page); :meth:`Gallery.get` returns them.
    ``pages`` is at least 1, so "page 1 of 1" also reads well for no results.
    ``match_all`` is False when a search found nothing containing every word
    and fell back to items containing any of them.
    """

    items: list[dict] = field(default_factory=list)
    total: int = 0
    page: int = 1
    per_page: int = 24
    pages: int = 1
    match_all: bool = True


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


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    """Let numpy arrays / torch tensors / numpy scalars go into JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class _EncodedImage:
    data: bytes
    ext: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _encode_image(image: Any, label: str) -> _EncodedImage:
    """Read ``image`` (bytes, a path or a PIL image) into checked, encoded bytes.

    Bytes and files are kept exactly as they are (after checking that they
    decode); a PIL image is encoded as PNG.  Raises GalleryError otherwise.
    """
    def fail(reason: Any) -> GalleryError:
        return GalleryError(f"Could not read the image '{label}': {reason}; "
                            "the gallery was not changed")

    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        try:
            try:
                image.save(buffer, format="PNG")
            except (OSError, ValueError, KeyError):  # a mode PNG cannot hold, e.g. CMYK
                buffer = io.BytesIO()
                image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buffer, format="PNG")
        except Exception as exc:
            raise fail(exc) from exc
        return _EncodedImage(buffer.getvalue(), "png", image.width, image.height)

    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            raise fail(exc.strerror or exc) from exc
    else:
        raise fail(f"expected bytes, a file path or a PIL image, got {type(image).__name__}")
    if not data:
        raise fail("the data is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height, fmt = img.width, img.height, img.format
            img.draft(img.mode, (256, 256))  # JPEG: decode at reduced scale, still reads it all
            img.load()  # raises on truncated or corrupt data
    except Exception as exc:
        raise fail(exc) from exc
    return _EncodedImage(data, _EXTENSIONS.get(fmt or "", (fmt or "img").lower()), width, height)


def _candidates_json(candidates: Any) -> tuple[str, str | None, list[str]]:
    """Validate beam candidates; return (JSON without attention, attention JSON, captions).

    Attention maps are big (words x N x N floats per candidate), so they are
    kept in their own column, read only by :meth:`Gallery.get` and exports.
    """
    if candidates is None:
        candidates = []
    if not isinstance(candidates, (list, tuple)):
        raise GalleryError("The candidates must be a list of dicts; the gallery was not changed")
    captions = []
    for i, cand in enumerate(candidates):
        if not isinstance(cand, dict) or not isinstance(cand.get("caption"), str):
            raise GalleryError(f"Candidate {i + 1} must be a dict with a text 'caption'; "
                               "the gallery was not changed")
        captions.append(cand["caption"])
    light = [{k: v for k, v in cand.items() if k != "attention"} for cand in candidates]
    maps = [cand.get("attention") for cand in candidates]
    try:
        text = json.dumps(light, default=_json_default)
        attention = json.dumps(maps, default=_json_default) if any(m is not None for m in maps) else None
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The candidates could not be stored: {exc}; "
                           "the gallery was not changed") from exc
    return text, attention, captions


def _as_id(item_id: Any) -> int | None:
    """An item id as an int SQLite can hold, or None if it cannot be one."""
    try:
        value = int(item_id)
    except (TypeError, ValueError):
        return None
    return value if -2**63 <= value < 2**63 else None


def _optional_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The {what} must be a whole number, not {value!r}; "
                           "the gallery was not changed") from exc


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _file_name(name: str) -> str:
    """The last part of a file name or path: the gallery keeps no folders of the computer."""
    return re.split(r"[\\/]", name)[-1]


def _merge_attention(candidates_json: str | None, attention_json: str | None) -> list[dict]:
    """The stored candidates, with their attention maps put back when there are any."""
    candidates = json.loads(candidates_json or "[]")
    if attention_json:
        for cand, attention in zip(candidates, json.loads(attention_json)):
            if attention is not None:
                cand["attention"] = attention
    return candidates


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
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


def _cannot_write(folder: Path, db_path: Path) -> bool:
    """Whether an existing gallery folder (or its database) cannot be written by this process."""
    if not folder.is_dir():
        return False  # missing: it will be created (or fail with its own message)
    if db_path.exists() and not os.access(db_path, os.W_OK):
        return True
    return not os.access(folder, os.W_OK | os.X_OK)


class Gallery:
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
        self.db_path = self.folder / DB_NAME
        self._local = threading.local()
        self.read_only = _cannot_write(self.folder, self.db_path) if read_only is None else read_only
        try:
            if self.read_only:
                self._open_read_only()
            else:
                self.images_dir.mkdir(parents=True, exist_ok=True)
                self._init_schema()
        except (OSError, sqlite3.Error, GalleryError) as exc:
            self.close()
            raise GalleryError(f"Could not open the gallery at '{self.folder}': {exc}") from exc

    def _open_read_only(self) -> None:
        if not self.folder.is_dir():
            raise GalleryError("it is not a folder")
        if not self.db_path.is_file():
            raise GalleryError(f"the folder is read-only and holds no {DB_NAME}")
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
                conn = _connect_read_only(self.db_path)
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

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

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

    def _init_schema(self) -> None:
        """Refuse a gallery from a newer captioner, switch to WAL, run pending migrations."""
        version = migrations.stored_version(self.db)
        migrations.check_supported(version)
        self._enable_wal()
        if version < migrations.LATEST:
            with self._write() as db:  # the lock makes migrating safe when processes race
                migrations.migrate(db)  # looks at the version again, under the lock

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

    # ------------------------------------------------------------------ rows
    def _row_to_item(self, row: dict) -> dict:
        """Row -> item dict; attention maps are merged back if the row has them.

        The stored image path is relative to ``images/``; the item's
        ``image_path`` is made absolute from this gallery's folder.
        """
        item = {column.item_key: row[column.name] for column in ITEM_COLUMNS}
        item["image_path"] = str(self.images_dir / row["image_file"])
        item["candidates"] = _merge_attention(row["candidates"], row.get("attention"))
        return item

    def _image_file(self, encoded: _EncodedImage) -> tuple[str, str]:
        digest = encoded.sha256
        return digest, f"{digest[:2]}/{digest}.{encoded.ext}"

    def _write_image(self, encoded: _EncodedImage, rel: str, force: bool = False) -> None:
        """Put the image at images/<rel> atomically (temp file + fsync + os.replace)."""
        target = self.images_dir / rel
        if target.exists() and not force:
            return  # same content already stored
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(encoded.data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _insert_row(self, encoded: _EncodedImage, rel: str, record: dict) -> int:
        """Insert the row; under the write lock, restore the file if a delete took it."""
        with self._write() as db:
            if not (self.images_dir / rel).exists():
                self._write_image(encoded, rel, force=True)
            return db[TABLE].insert(record).last_pk

    # ------------------------------------------------------------------- API
    def save(self, image: Any, original_name: str | None, caption: str,
             candidates: list[dict] | None = None, beam_size: int | None = None,
             model_name: str | None = None, width: int | None = None,
             height: int | None = None) -> int:
        """Store an image with its caption; return the new item id.

        ``image`` may be bytes, a file path or a PIL image; identical bytes are
        stored once.  ``candidates`` are beam results (dicts with at least a
        ``caption``; tokens, scores and attention maps are kept as JSON).
        Raises GalleryError, leaving the gallery unchanged, for bad input.
        """
        self._check_writable()
        if original_name is None and isinstance(image, (str, os.PathLike)):
            original_name = Path(image).name
        original_name = "" if original_name is None else _file_name(str(original_name))
        label = original_name or "image"
        if not isinstance(caption, str):
            raise GalleryError("The caption must be text; the gallery was not changed")
        candidates_text, attention, cand_captions = _candidates_json(candidates)
        width, height = _optional_int(width, "width"), _optional_int(height, "height")
        beam_size = _optional_int(beam_size, "beam size")
        encoded = _encode_image(image, label)
        digest, rel = self._image_file(encoded)
        # Candidate captions other than the chosen one, for search; if the
        # caption is edited later the old text therefore stops matching.
        seen = {_norm(caption)}
        alternatives = []
        for text in cand_captions:
            if _norm(text) not in seen:
                seen.add(_norm(text))
                alternatives.append(text)
        record = {
            "image_hash": digest, "image_file": rel, "original_name": original_name,
            "width": encoded.width if width is None else width,
            "height": encoded.height if height is None else height,
            "caption": caption, "alternatives": "\n".join(alternatives),
            "candidates": candidates_text,
            "beam_size": beam_size,
            "model_name": None if model_name is None else str(model_name), "saved_at": _utc_now(), "attention": attention,
        }
        try:
            self._write_image(encoded, rel)
        except OSError as exc:
            raise GalleryError(f"Could not write the image '{label}' into the gallery: "
                               f"{exc}; the gallery was not changed") from exc
        return self._insert_row(encoded, rel, record)

    def get(self, item_id: int) -> dict | None:
        """The item, or None if there is none.

        Keys: id, image_hash, image_path (absolute str), original_name, width,
        height, caption, candidates (list of dicts, with attention maps),
        beam_size, model_name, saved_at and edited_at (UTC ISO 8601; None if
        the caption was never edited).
        """
        item_id = _as_id(item_id)
        if item_id is None:
            return None
        rows = list(self.db.query(f"SELECT {FULL} FROM {TABLE} WHERE id = ?", [item_id]))
        return self._row_to_item(rows[0]) if rows else None

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

    def browse(self, page: int = 1, per_page: int = 24) -> Page:
        """Items newest first, one page at a time (pages past the end are empty)."""
        page, per_page = self._paging(page, per_page)
        rows = self.db.query(f"SELECT {LIGHT} FROM {TABLE} ORDER BY id DESC LIMIT ? OFFSET ?",
                             [per_page, (page - 1) * per_page])
        items = [self._row_to_item(r) for r in rows]
        return self._page(items, self.count(), page, per_page)

    def search(self, query: str, page: int = 1, per_page: int = 24) -> Page:
        """Full-text search over captions, other beam candidates and file names.

        Words are stemmed ("dogs" finds "dog"), ``word*`` is a prefix search,
        and results are ranked by bm25 (caption matches weigh most).  Items
        must contain every word; if none do, items containing any word are
        returned instead (``Page.match_all`` is then False).  Any text is
        accepted: FTS5 operators and punctuation are treated as plain text.
        An empty or punctuation-only query returns :meth:`browse` results.
        """
        page, per_page = self._paging(page, per_page)
        text = query if isinstance(query, str) else ("" if query is None else str(query))
        if to_fts_query(text) is None:
            return self.browse(page, per_page)
        for match_all in (True, False):
            fts = to_fts_query(text, match_all)
            try:
                total = self.db.execute(
                    f"SELECT count(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?", [fts]
                ).fetchone()[0]
                if total == 0 and match_all:
                    continue
                rows = self.db.query(
                    f"""SELECT {LIGHT} FROM (
                            SELECT rowid, rank FROM {FTS_TABLE}
                            WHERE {FTS_TABLE} MATCH :q AND rank MATCH '{BM25_WEIGHTS}'
                            ORDER BY rank LIMIT :limit OFFSET :offset
                        ) AS hits JOIN {TABLE} ON {TABLE}.id = hits.rowid
                        ORDER BY hits.rank""",
                    {"q": fts, "limit": per_page, "offset": (page - 1) * per_page},
                )
                items = [self._row_to_item(r) for r in rows]
            except sqlite3.OperationalError as exc:
                if "fts5" in str(exc) or "syntax" in str(exc):  # should not happen: words are quoted
                    return self._page([], 0, page, per_page)
                raise
            return self._page(items, total, page, per_page, match_all)
        return self._page([], 0, page, per_page)

    def update_caption(self, item_id: int, text: str) -> None:
        """Replace an item's caption and set its ``edited_at`` (the search index follows at once)."""
        if not isinstance(text, str):
            raise GalleryError("The caption must be text")
        if _as_id(item_id) is None:
            raise GalleryError(f"Item {item_id} does not exist")
        with self._write() as db:
            cursor = db.execute(f"UPDATE {TABLE} SET caption = ?, edited_at = ? WHERE id = ?",
                                [text, _utc_now(), _as_id(item_id)])
            if cursor.rowcount == 0:
                raise GalleryError(f"Item {item_id} does not exist")

    def delete(self, item_id: int) -> bool:
        """Delete an item; its image file goes too unless another item shares it.

        Returns False if there was no such item.
        """
        item_id = _as_id(item_id)
        if item_id is None:
            return False
        with self._write() as db:
            row = db.execute(f"SELECT image_hash, image_file FROM {TABLE} WHERE id = ?",
                             [item_id]).fetchone()
            if row is None:
                return False
            db.execute(f"DELETE FROM {TABLE} WHERE id = ?", [item_id])
        # Second transaction, used as a lock: a crash before the unlink only
        # leaves an orphan file, never a row without its file.
        with self._write() as db:
            in_use = db.execute(f"SELECT 1 FROM {TABLE} WHERE image_hash = ? LIMIT 1",
                                [row[0]]).fetchone()
            if not in_use:
                with contextlib.suppress(FileNotFoundError):
                    (self.images_dir / row[1]).unlink()
        return True

    def count(self) -> int:
        """Number of items."""
        return self.db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]

    def iter_items(self) -> Iterator[dict]:
        """Every item, oldest first (streams; does not load the whole gallery)."""
        for row in self.db.query(f"SELECT {FULL} FROM {TABLE} ORDER BY id"):
            yield self._row_to_item(row)

    def export(self, path: str | os.PathLike, fmt: str = "json") -> Path:
        """Write all items to ``path`` as JSON (a list) or CSV; return the path.

        CSV holds the candidates as a JSON string column.  The file is written
        to a temporary name first, so a failed export leaves no half file.
        """
        fmt = (fmt or "").lower()
        if fmt not in ("json", "csv"):
            raise GalleryError(f"Unknown export format '{fmt}': use 'json' or 'csv'")
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".export-", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                    if fmt == "json":
                        fh.write("[")
                        for i, item in enumerate(self.iter_items()):
                            fh.write(",\n" if i else "\n")
                            fh.write(json.dumps(item, ensure_ascii=False))
                        fh.write("\n]\n")
                    else:
                        writer = csv.DictWriter(fh, fieldnames=EXPORT_FIELDS)
                        writer.writeheader()
                        for item in self.iter_items():
                            item["candidates"] = json.dumps(item["candidates"], ensure_ascii=False)
                            writer.writerow(item)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise GalleryError(f"Could not export the gallery to '{path}': {exc}") from exc
        return path

    def integrity_check(self) -> str:
        """"ok", or the problems one per line: ``PRAGMA integrity_check``'s, then the search index's."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
        try:
            self.db.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES('integrity-check')")
            problems += self._search_index_drift()
        except sqlite3.DatabaseError as exc:
            problems.append(f"search index: {exc}")
        return "\n".join(problems) or "ok"

    def _search_index_drift(self) -> list[str]:
        """Items missing from the search index and entries for no item (FTS5's own check misses both)."""
        missing = self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE id NOT IN "
                                  f"(SELECT id FROM {FTS_TABLE}_docsize)").fetchone()[0]
        extra = self.db.execute(f"SELECT count(*) FROM {FTS_TABLE}_docsize WHERE id NOT IN "
                                f"(SELECT id FROM {TABLE})").fetchone()[0]
        if not (missing or extra):
            return []
        return [f"search index: {missing} item(s) missing from it, {extra} entry(ies) for no item"]

    def rebuild_search_index(self) -> None:
        """Rebuild the full-text index from the items table (repairs a damaged index)."""
        with self._write() as db:
            db.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES('rebuild')")

    def missing_images(self) -> list[int]:
        """Ids of the items whose image file is gone."""
        rows = self.db.execute(f"SELECT id, image_file FROM {TABLE} ORDER BY id").fetchall()
        return [item_id for item_id, rel in rows if not (self.images_dir / rel).is_file()]

    def orphan_images(self) -> list[Path]:
        """Image files no item uses (and stale temp files), without removing them."""
        with self._write() as db:  # under the lock, so no save can be mid-way
            return list(self._orphans(db))

    def remove_orphan_images(self) -> list[Path]:
        """Delete image files no item uses (and stale temp files); return them."""
        removed = []
        with self._write() as db:  # under the lock, so no save can be mid-way
            for path in self._orphans(db):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        return removed

    def _orphans(self, db: sqlite_utils.Database) -> Iterator[Path]:
        """Files under images/ that no row uses; the caller holds the write lock."""
        used = {r[0] for r in db.execute(f"SELECT DISTINCT image_file FROM {TABLE}")}
        now = time.time()
        for path in sorted(self.images_dir.glob("*/*")):
            if not path.is_file():
                continue
            if path.name.startswith(".tmp-"):
                if now - path.stat().st_mtime < STALE_TEMP_S:
                    continue  # perhaps another process is writing it right now
            elif f"{path.parent.name}/{path.name}" in used:
                continue
            yield path
