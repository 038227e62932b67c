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

No GUI code here: the Gradio app and the CLI both sit on top of this module.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import html
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
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from . import backup, migrations, opening, tempfiles
from ._sqlite_utils import sqlite_utils
from .errors import DuplicateItemError, GalleryError
from .fts_query import SearchQuery, parse_search
from .schema import (
    BM25_WEIGHTS,
    CSV_FIELDS,
    FEATURES_TABLE,
    FTS_COLUMNS,
    FTS_TABLE,
    FTS_TOKENIZE,
    FULL,
    HISTORY_TABLE,
    ITEM_COLUMNS,
    LIGHT,
    MATCHED_IN,
    SEGMENTS_BM25_WEIGHTS,
    SEGMENTS_FTS_TABLE,
    SEGMENTS_TABLE,
    TABLE,
)
from .targets import check_target

__all__ = ["DuplicateItemError", "Gallery", "GalleryError", "Page", "default_gallery_dir"]

DB_NAME = "gallery.db"
IMAGES_DIR = "images"
VIDEOS_DIR = "videos"
#: A video item's caption (its segments' captions joined) is cut near this many characters.
MAX_VIDEO_CAPTION = 500
VIDEO_CAPTION_SEPARATOR = " · "
#: At most this many matching segments are listed per video item in a search page.
MAX_MATCHED_SEGMENTS = 100
_COPY_CHUNK = 1 << 20
BUSY_TIMEOUT_S = 60.0
MAX_PER_PAGE = 1000
#: Pages past this are empty anyway; the cap keeps OFFSET within SQLite's 64-bit integers.
MAX_PAGE = 10**9
#: Temporary image files older than this are assumed abandoned by a crash (see :mod:`.tempfiles`).
STALE_TEMP_S = tempfiles.STALE_TEMP_S
#: The ways :meth:`Gallery.browse` and :meth:`Gallery.search` can sort (search also: "relevance").
SORTS = ("saved_at", "caption", "confidence")
KINDS = ("photo", "video")
#: Items may hold at most this many tags (the rest are dropped, lowest scores first).
MAX_TAGS = 50
#: Live items (not in the trash), read from the deleted_at index: a row's deleted_at is stored after its
#: attention maps, so reading it from the row would walk their overflow pages.
_LIVE = f"{{id}} NOT IN (SELECT id FROM {TABLE} WHERE deleted_at IS NOT NULL)"
_MARK_START, _MARK_END = "\x02", "\x03"
#: What a search looks in unless asked for the unpicked candidates too: what the user saved.
SAVED_COLUMNS = ("caption", "original_name", "tag_text")
SAVED_SEGMENT_COLUMNS = ("caption", "tag_text")
#: The per-connection in-memory search index of one page's items, for highlights.
PAGE_FTS = "page_fts"  # highlight() markers, swapped for <mark> after escaping
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif",
               "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


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
        with warnings.catch_warnings():  # over ~89 MP: the caption step already said so, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
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


def _video_ext(head: bytes, name: str) -> str:
    """The file extension for a video: from its first bytes, else from its name, else 'bin'."""
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"OggS":
        return "ogv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpg"
    suffix = Path(name).suffix[1:].lower()
    return suffix if re.fullmatch(r"[a-z0-9]{1,8}", suffix) else "bin"


def _placeholder_poster() -> Image.Image:
    """A small neutral picture (grey, a lighter 'play' triangle) for a video saved without a poster."""
    from PIL import ImageDraw

    img = Image.new("RGB", (160, 90), (96, 96, 96))
    ImageDraw.Draw(img).polygon([(66, 27), (66, 63), (98, 45)], fill=(200, 200, 200))
    return img


def _seconds(value: Any, what: str) -> float:
    """A time in seconds: a finite number, 0 or more."""
    if value is None or isinstance(value, (bool, str, bytes)):
        raise GalleryError(f"The {what} must be a number of seconds, not {value!r}; the gallery was not changed")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The {what} must be a number of seconds, not {value!r}; "
                           "the gallery was not changed") from exc
    if not math.isfinite(number) or number < 0:
        raise GalleryError(f"The {what} must be a number of seconds, 0 or more, not {value!r}; "
                           "the gallery was not changed")
    return number


def _segment_rows(segments: Any) -> list[dict]:
    """Validate a video's segments; return the rows to store (idx, start, end, caption, alternatives,
    candidates without attention)."""
    if not isinstance(segments, (list, tuple)) or not segments:
        raise GalleryError("A video needs a non-empty list of segments; the gallery was not changed")
    rows = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict):
            raise GalleryError(f"Segment {i + 1} must be a dict; the gallery was not changed")
        start = _seconds(seg.get("start"), f"start of segment {i + 1}")
        end = _seconds(seg.get("end"), f"end of segment {i + 1}")
        if start > end:
            raise GalleryError(f"Segment {i + 1} ends ({end:g} s) before it starts ({start:g} s); "
                               "the gallery was not changed")
        caption = seg.get("caption")
        if not isinstance(caption, str):
            raise GalleryError(f"The caption of segment {i + 1} must be text; the gallery was not changed")
        try:
            candidates, _attention, cand_captions = _candidates_json(seg.get("candidates"))
        except GalleryError as exc:
            raise GalleryError(f"Segment {i + 1}: {exc}") from exc
        tags, tag_text = _tags_json(seg.get("tags"), f"tags of segment {i + 1}")
        rows.append({"idx": i, "start": start, "end": end, "caption": caption,
                     "alternatives": "\n".join(_distinct(cand_captions, exclude=[caption])),
                     "candidates": candidates, "tags": tags, "tag_text": tag_text})
    return rows


def _distinct(texts: list[str], exclude: tuple[str, ...] | list[str] = ()) -> list[str]:
    """``texts`` without repeats (ignoring case and spacing) and without those in ``exclude``."""
    seen = {_norm(t) for t in exclude}
    out = []
    for text in texts:
        if text.strip() and _norm(text) not in seen:
            seen.add(_norm(text))
            out.append(text)
    return out


def _tags_json(tags: Any, what: str = "tags") -> tuple[str | None, str | None]:
    """Validate tags (dicts with ``label`` and ``score``, or objects with those attributes, e.g.
    ``captioner.tags.Tag``); return (JSON list, labels one a line for search), None for None."""
    if tags is None:
        return None, None
    if not isinstance(tags, (list, tuple)):
        raise GalleryError(f"The {what} must be a list of {{label, score}}; the gallery was not changed")
    best: dict[str, float | None] = {}
    for i, tag in enumerate(tags):
        if isinstance(tag, dict):
            label, score = tag.get("label"), tag.get("score")
        else:
            label, score = getattr(tag, "label", None), getattr(tag, "score", None)
        if not isinstance(label, str) or not label.strip():
            raise GalleryError(f"Tag {i + 1} of the {what} needs a text 'label'; the gallery was not changed")
        if score is not None:
            try:
                score = float(score)
            except (TypeError, ValueError) as exc:
                raise GalleryError(f"The score of tag '{label}' must be a number; "
                                   "the gallery was not changed") from exc
            if not math.isfinite(score):
                raise GalleryError(f"The score of tag '{label}' must be finite; the gallery was not changed")
        label = " ".join(label.split())
        if label not in best or (score is not None and (best[label] is None or score > best[label])):
            best[label] = score
    ranked = sorted(best.items(), key=lambda kv: -(kv[1] if kv[1] is not None else -math.inf))[:MAX_TAGS]
    return (json.dumps([{"label": label, "score": score} for label, score in ranked], ensure_ascii=False),
            "\n".join(label for label, _ in ranked))


def _confidence(value: Any) -> float | None:
    """A confidence: None, or a number from 0 to 1."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The confidence must be a number from 0 to 1, not {value!r}; "
                           "the gallery was not changed") from exc
    if not (0.0 <= number <= 1.0):
        raise GalleryError(f"The confidence must be a number from 0 to 1, not {value!r}; "
                           "the gallery was not changed")
    return number


def _time_bound(value: Any, what: str, end: bool) -> tuple[str, str] | None:
    """A date filter as (SQL operator, UTC ISO text to compare ``saved_at`` with), None for None.

    ``value``: a datetime (naive: UTC), a date, or ISO 8601 text ("2026-11-27", "2026-11-27T15:00").
    A day includes all of it: ``saved_to="2026-11-27"`` keeps items saved on that day.
    """
    from datetime import date, timedelta

    if value is None or value == "":
        return None
    day = None
    moment = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise GalleryError(f"The {what} date '{value}' is not a date: use YYYY-MM-DD "
                               "or YYYY-MM-DDTHH:MM") from exc
    else:
        raise GalleryError(f"The {what} date must be a date or ISO 8601 text, not {type(value).__name__}")
    if day is not None:
        moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        if end:
            return "<", (moment + timedelta(days=1)).isoformat(timespec="seconds")
        return ">=", moment.isoformat(timespec="seconds")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    text = moment.astimezone(timezone.utc).isoformat(timespec="seconds")
    return ("<=", text) if end else (">=", text)


def _features_blob(grid: Any) -> tuple[str, str, bytes]:
    """Encoder features as (dtype, shape text, little-endian float16 bytes); GalleryError if unusable."""
    import numpy as np

    if hasattr(grid, "detach"):  # a torch tensor
        grid = grid.detach().cpu().float().numpy()
    try:
        array = np.asarray(grid, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The features must be an array of numbers: {exc}; the gallery was not changed") from exc
    if array.ndim not in (1, 2, 3) or array.size == 0:
        raise GalleryError(f"The features must be a non-empty 1-3 dimensional array, not shape {array.shape}; "
                           "the gallery was not changed")
    if not np.isfinite(array).all():
        raise GalleryError("The features hold NaN or infinite values; the gallery was not changed")
    half = np.ascontiguousarray(array.astype("<f2"))
    return "float16", ",".join(str(n) for n in half.shape), half.tobytes()


def _highlight(marked: str | None, caption: str) -> str:
    """FTS5 highlight() output (or the plain caption) as HTML: escaped, the matches in <mark>."""
    text = html.escape(caption if marked is None else marked, quote=False)
    return text.replace(_MARK_START, "<mark>").replace(_MARK_END, "</mark>")


def _video_caption(captions: list[str]) -> str:
    """The distinct segment captions in order, joined with " · ", cut at a caption near
    :data:`MAX_VIDEO_CAPTION` characters (then ending with "…")."""
    parts = [" ".join(c.split()) for c in _distinct(captions)]
    text = ""
    for part in parts:
        joined = part if not text else text + VIDEO_CAPTION_SEPARATOR + part
        if len(joined) > MAX_VIDEO_CAPTION:
            if not text:  # one very long caption: cut it at a word
                return part[:MAX_VIDEO_CAPTION].rsplit(" ", 1)[0] + " …"
            return text + VIDEO_CAPTION_SEPARATOR + "…"
        text = joined
    return text


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
        self.videos_dir = self.folder / VIDEOS_DIR
        self.db_path = self.folder / DB_NAME
        self._local = threading.local()
        self.read_only = _cannot_write(self.folder, self.db_path) if read_only is None else read_only
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

    # ------------------------------------------------------------------ rows
    def _row_to_item(self, row: dict) -> dict:
        """Row -> item dict; attention maps are merged back if the row has them.

        The stored image path is relative to ``images/``; the item's
        ``image_path`` is made absolute from this gallery's folder.
        """
        item = {column.item_key: row[column.name] for column in ITEM_COLUMNS}
        item["image_path"] = str(self.images_dir / row["image_file"])
        item["video_path"] = self._video_path(row["video_file"])
        item["candidates"] = _merge_attention(row["candidates"], row.get("attention"))
        item["tags"] = json.loads(row["tags"]) if row.get("tags") else []
        return item

    def _video_path(self, rel: str | None) -> str | None:
        """The absolute path of a stored ``videos/...`` path (None: none, or one leading elsewhere)."""
        if not rel:
            return None
        parts = rel.replace("\\", "/").split("/")
        if parts[0] != VIDEOS_DIR or len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or ":" in rel:
            return None
        return str(self.folder.joinpath(*parts))

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

    def _image_file(self, encoded: _EncodedImage) -> tuple[str, str]:
        digest = encoded.sha256
        return digest, f"{digest[:2]}/{digest}.{encoded.ext}"

    def _write_image(self, encoded: _EncodedImage, rel: str, force: bool = False) -> None:
        """Put the image at images/<rel> atomically (temp file + fsync + os.replace)."""
        target = self.images_dir / rel
        if target.exists() and not force:
            return  # same content already stored
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=tempfiles.temp_prefix(), dir=target.parent)
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

    def _insert_row(self, encoded: _EncodedImage, rel: str, record: dict, features: Any = None) -> int:
        """Insert the row (refusing a duplicate); under the write lock, restore the file if a delete took it."""
        with self._write() as db:
            rows = db.execute(f"SELECT id, caption FROM {TABLE} WHERE image_hash = ? AND deleted_at IS NULL "
                              "ORDER BY id", [record["image_hash"]]).fetchall()
            for item_id, caption in rows:
                if _norm(caption) == _norm(record["caption"]):
                    name = record["original_name"] or "this photo"
                    raise DuplicateItemError(f"{name} is already in the gallery with this caption (item "
                                             f"{item_id}); it was not saved again", item_id)
            if not (self.images_dir / rel).exists():
                self._write_image(encoded, rel, force=True)
            item_id = db[TABLE].insert(record).last_pk
            if features is not None:
                self._store_features(db, item_id, *features)
            return item_id

    # ------------------------------------------------------------------- API
    def save(self, image: Any, original_name: str | None, caption: str,
             candidates: list[dict] | None = None, beam_size: int | None = None,
             model_name: str | None = None, width: int | None = None,
             height: int | None = None, *, tags: Any = None, confidence: float | None = None,
             features: Any = None) -> int:
        """Store an image with its caption; return the new item id.

        ``image`` may be bytes, a file path or a PIL image; identical bytes are
        stored once.  ``candidates`` are beam results (dicts with at least a
        ``caption``; tokens, scores and attention maps are kept as JSON).
        ``tags``: what is in the picture (dicts with ``label`` and ``score``, or
        ``Tag`` objects), searched like the caption; ``confidence``: the
        caption's calibrated confidence, 0..1; ``features``: the encoder grid
        (an array, kept as float16 for ``model_name``; see :meth:`set_features`).
        Raises GalleryError, leaving the gallery unchanged, for bad input, and
        DuplicateItemError (with ``.item_id``) when the same photo is already
        in the gallery with the same caption.
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
        tags_text, tag_text = _tags_json(tags)
        confidence = _confidence(confidence)
        grid = None if features is None else (*_features_blob(features), self._feature_model(model_name))
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
            "tags": tags_text, "tag_text": tag_text, "confidence": confidence,
        }
        new_file = not (self.images_dir / rel).exists()
        try:
            self._write_image(encoded, rel)
        except OSError as exc:
            raise GalleryError(f"Could not write the image '{label}' into the gallery: "
                               f"{exc}; the gallery was not changed") from exc
        try:
            return self._insert_row(encoded, rel, record, grid)
        except DuplicateItemError:
            raise
        except BaseException:
            if new_file:  # no image file without a row (e.g. the disk filled up before the row)
                with contextlib.suppress(Exception):
                    self._remove_unused_files([(rel, None)])
            raise

    def save_video(self, video: Any, original_name: str | None, segments: list[dict], *, poster: Any = None,
                   model_name: str | None = None, beam_size: int | None = None, width: int | None = None,
                   height: int | None = None, duration: float | None = None, tags: Any = None,
                   confidence: float | None = None) -> int:
        """Store a captioned video; return the new item id.

        ``video``: bytes or a file path (not decoded here), stored once per content under ``videos/``.
        ``segments``: dicts with ``start`` and ``end`` (seconds), ``caption`` and optional ``candidates``
        (dicts with at least a ``caption``; attention maps are dropped), in order.  ``poster``: a PIL
        image, path or bytes shown as the item's picture (None: a small grey placeholder).  The item's
        caption is the distinct segment captions joined with " · "; ``duration`` defaults to the last
        segment's end.  Segments may carry ``tags`` (as :meth:`save` takes them), searched with the
        segment; the item's tags are ``tags`` if given, else every segment's tags (best score each).
        Raises GalleryError, leaving the gallery unchanged, for bad input, and DuplicateItemError (with
        ``.item_id``) when the same video (same bytes) is already in the gallery with the same shots
        (same start and end times, same captions, case and spacing aside).
        """
        self._check_writable()
        if original_name is None and isinstance(video, (str, os.PathLike)):
            original_name = Path(video).name
        original_name = "" if original_name is None else _file_name(str(original_name))
        label = original_name or "video"
        rows = _segment_rows(segments)
        duration = max(r["end"] for r in rows) if duration is None else _seconds(duration, "duration")
        width, height = _optional_int(width, "width"), _optional_int(height, "height")
        beam_size = _optional_int(beam_size, "beam size")
        confidence = _confidence(confidence)
        if tags is None and any(r["tags"] is not None for r in rows):
            tags = [t for r in rows for t in json.loads(r["tags"] or "[]")]
        tags_text, tag_text = _tags_json(tags)
        if not isinstance(video, (bytes, bytearray, memoryview, str, os.PathLike)):
            raise GalleryError(f"Could not read the video '{label}': expected bytes or a file path, got "
                               f"{type(video).__name__}; the gallery was not changed")
        encoded = _encode_image(_placeholder_poster() if poster is None else poster, f"{label} (poster)")
        digest, rel = self._image_file(encoded)
        captions = [r["caption"] for r in rows]
        alternatives = _distinct([a for r in rows for a in r["alternatives"].split("\n")], exclude=captions)
        record = {
            "image_hash": digest, "image_file": rel, "original_name": original_name,
            "width": encoded.width if width is None else width,
            "height": encoded.height if height is None else height,
            "caption": _video_caption(captions), "alternatives": "\n".join(alternatives), "candidates": "[]",
            "beam_size": beam_size, "model_name": None if model_name is None else str(model_name),
            "saved_at": _utc_now(), "attention": None, "kind": "video", "duration": duration,
            "tags": tags_text, "tag_text": tag_text, "confidence": confidence,
        }
        try:
            tmp, video_rel = self._copy_video(video, label)
        except OSError as exc:
            raise GalleryError(f"Could not write the video '{label}' into the gallery: "
                               f"{exc}; the gallery was not changed") from exc
        try:
            self._write_image(encoded, rel)
            with self._write() as db:
                same = self._same_video(db, video_rel, rows)
                if same is not None:
                    raise DuplicateItemError(f"{label} is already in the gallery with these shots and captions "
                                             f"(item {same}); it was not saved again", same)
                if not (self.images_dir / rel).exists():  # a delete took it since
                    self._write_image(encoded, rel, force=True)
                # in place under the write lock: deletes only remove unused videos under it too
                target = self.folder / video_rel
                if target.exists():
                    os.unlink(tmp)
                else:
                    os.replace(tmp, target)
                tmp = None
                item_id = db[TABLE].insert({**record, "video_file": video_rel}).last_pk
                db.conn.executemany(
                    f'INSERT INTO {SEGMENTS_TABLE} (item_id, idx, start, "end", caption, alternatives, candidates, '
                    "tags, tag_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(item_id, r["idx"], r["start"], r["end"], r["caption"], r["alternatives"], r["candidates"],
                      r["tags"], r["tag_text"]) for r in rows])
                return item_id
        except OSError as exc:
            raise GalleryError(f"Could not write the video '{label}' into the gallery: "
                               f"{exc}; the gallery was not changed") from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    @staticmethod
    def _same_video(db: sqlite_utils.Database, video_rel: str, rows: list[dict]) -> int | None:
        """The id of a live video item with this video file's content (its hash names the file) and the
        same shots as ``rows`` (times to the millisecond, captions case and spacing aside), or None."""
        stem = video_rel.rsplit(".", 1)[0] + "."
        ids = [r[0] for r in db.execute(
            f"SELECT id FROM {TABLE} WHERE kind = 'video' AND deleted_at IS NULL "
            "AND substr(video_file, 1, ?) = ? ORDER BY id", [len(stem), stem]).fetchall()]
        wanted = [(round(r["start"], 3), round(r["end"], 3), _norm(r["caption"])) for r in rows]
        for item_id in ids:
            stored = db.execute(f'SELECT start, "end", caption FROM {SEGMENTS_TABLE} WHERE item_id = ? '
                                "ORDER BY idx", [item_id]).fetchall()
            if [(round(a, 3), round(b, 3), _norm(c or "")) for a, b, c in stored] == wanted:
                return item_id
        return None

    def _copy_video(self, video: Any, label: str) -> tuple[str, str]:
        """Copy the video into a temporary file under videos/ (hashing it on the way, fsynced);
        return that file and the path, relative to the gallery folder, it belongs at."""
        if isinstance(video, (str, os.PathLike)):
            try:
                source = open(video, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise GalleryError(f"Could not read the video '{label}': {exc.strerror or exc}; "
                                   "the gallery was not changed") from exc
        else:
            source = io.BytesIO(bytes(video))
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        digest, size, head = hashlib.sha256(), 0, b""
        fd, tmp = tempfile.mkstemp(prefix=tempfiles.temp_prefix(), dir=self.videos_dir)
        try:
            with source, os.fdopen(fd, "wb") as fh:
                while chunk := source.read(_COPY_CHUNK):
                    if not head:
                        head = chunk[:64]
                    digest.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if not size:
                raise GalleryError(f"Could not read the video '{label}': the data is empty; "
                                   "the gallery was not changed")
            name = digest.hexdigest()
            rel = f"{VIDEOS_DIR}/{name[:2]}/{name}.{_video_ext(head, label)}"
            (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp, rel

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
        item_id = _as_id(item_id)
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

    # ------------------------------------------------------- browse and search
    def _filters(self, model: Any = None, kind: Any = None, saved_from: Any = None, saved_to: Any = None,
                 min_confidence: Any = None, max_confidence: Any = None) -> tuple[str, dict]:
        """SQL conditions (``AND ...``, on the items table) and their parameters for the filters."""
        where, params = [], {}
        if model is not None and model != "":
            where.append(f"{TABLE}.model_name = :model")
            params["model"] = str(model)
        if kind is not None and kind != "":
            if kind not in KINDS:
                raise GalleryError(f"Unknown kind '{kind}': use 'photo' or 'video'")
            where.append(f"{TABLE}.kind = :kind")
            params["kind"] = kind
        for value, what, end, key in ((saved_from, "from", False, "saved_from"), (saved_to, "to", True, "saved_to")):
            bound = _time_bound(value, what, end)
            if bound:
                where.append(f"{TABLE}.saved_at {bound[0]} :{key}")
                params[key] = bound[1]
        for value, op, key in ((min_confidence, ">=", "min_conf"), (max_confidence, "<=", "max_conf")):
            if value is not None and value != "":
                where.append(f"{TABLE}.confidence {op} :{key}")
                params[key] = _confidence(value)
        return "".join(f" AND {w}" for w in where), params

    @staticmethod
    def _order(sort: Any, descending: bool, relevance: bool = False) -> str:
        """The ORDER BY text for a sort (newest first by default); ties go by id."""
        way = "DESC" if descending else "ASC"
        if relevance and sort in (None, "", "relevance"):
            return "best.tier, best.score, best.hit"
        if sort in (None, "", "saved_at"):
            return f"{TABLE}.saved_at {way}, {TABLE}.id {way}"
        if sort == "caption":
            return f"{TABLE}.caption COLLATE NOCASE {way}, {TABLE}.id {way}"
        if sort == "confidence":  # items without one last, either way (SQLite sorts NULL lowest)
            if descending:
                return f"{TABLE}.confidence DESC, {TABLE}.id DESC"
            return f"{TABLE}.confidence IS NULL, {TABLE}.confidence ASC, {TABLE}.id ASC"
        choices = ", ".join(("relevance", *SORTS) if relevance else SORTS)
        raise GalleryError(f"Unknown sort '{sort}': use one of {choices}")

    def browse(self, page: int = 1, per_page: int = 24, *, sort: str = "saved_at", descending: bool = True,
               model: str | None = None, kind: str | None = None, saved_from: Any = None, saved_to: Any = None,
               min_confidence: float | None = None, max_confidence: float | None = None) -> Page:
        """Live items (not those in the trash), newest first, one page at a time (pages past the end
        are empty).

        ``sort``: "saved_at", "caption" (A to Z when not ``descending``) or "confidence" (items without
        one last).  Filters: ``model`` (a model name, see :meth:`models`), ``kind`` ("photo"/"video"),
        ``saved_from`` / ``saved_to`` (dates or ISO 8601 times, UTC; a day counts whole),
        ``min_confidence`` / ``max_confidence``.
        """
        page, per_page = self._paging(page, per_page)
        where, params = self._filters(model, kind, saved_from, saved_to, min_confidence, max_confidence)
        order = self._order(sort, descending)
        ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM {TABLE} WHERE {_LIVE.format(id=f'{TABLE}.id')}{where} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset",
            {**params, "limit": per_page, "offset": (page - 1) * per_page})]
        if where:
            total = self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE {_LIVE.format(id=f'{TABLE}.id')}{where}",
                                    params).fetchone()[0]
        else:  # read from the deleted_at index alone
            total = self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE deleted_at IS NULL").fetchone()[0]
        return self._page(self._light_items(ids), total, page, per_page)

    def _light_items(self, ids: list[int]) -> list[dict]:
        """Page items (no attention maps) for ``ids``, in that order."""
        if not ids:
            return []
        rows = self.db.query(f"SELECT {LIGHT} FROM {TABLE} WHERE id IN ({', '.join('?' * len(ids))})", ids)
        by_id = {row["id"]: self._row_to_item(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    @staticmethod
    def _hits_sql(ranked: bool = False, tiers: bool = False) -> str:
        """Items matching :q through their own index entry or a segment's (``hit``); ``ranked`` adds
        each match's bm25 ``score``, ``tiers`` whether the saved caption alone matches (``tier`` 0)
        or not (1: through tags, file name, other candidates, or words spread over them).  (One
        column-filtered search per tier: a tier for each column cost twice the time of the search.)"""
        def extra(fts: str, rowid: str, columns: list[tuple[str, int]]) -> str:
            text = f", {fts}.rank AS score" if ranked else ""
            if tiers:
                whens = " ".join(f"WHEN {rowid} IN (SELECT rowid FROM {fts} WHERE {fts} MATCH :{param}) THEN {n}"
                                 for param, n in columns)
                text += f", CASE {whens} ELSE 1 END AS tier"
            return text

        def rank(fts: str, weights: str) -> str:
            return f" AND {fts}.rank MATCH '{weights}'" if ranked else ""

        items = extra(FTS_TABLE, f"{FTS_TABLE}.rowid", [("qc", 0)])
        segments = extra(SEGMENTS_FTS_TABLE, f"{SEGMENTS_FTS_TABLE}.rowid", [("qsc", 0)])
        return f"""SELECT {FTS_TABLE}.rowid AS hit{items}
                   FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q{rank(FTS_TABLE, BM25_WEIGHTS)}
                   UNION ALL
                   SELECT s.item_id AS hit{segments}
                   FROM {SEGMENTS_FTS_TABLE} JOIN {SEGMENTS_TABLE} AS s ON s.id = {SEGMENTS_FTS_TABLE}.rowid
                   WHERE {SEGMENTS_FTS_TABLE} MATCH :qs{rank(SEGMENTS_FTS_TABLE, SEGMENTS_BM25_WEIGHTS)}"""

    def search(self, query: str, page: int = 1, per_page: int = 24, *, sort: str = "relevance",
               descending: bool = True, model: str | None = None, kind: str | None = None,
               saved_from: Any = None, saved_to: Any = None, min_confidence: float | None = None,
               max_confidence: float | None = None, candidates: bool = True) -> Page:
        """Full-text search over captions, tags, other beam candidates and file names (live items only).
        ``candidates=False`` searches only what the user saved (caption, tags, file name: the studio's
        default), unless the query starts with ``candidates:``; ``NOT`` then leaves out only what those say
        (an unpicked candidate's "grass" does not hide an item whose saved caption has none).

        The search language (:func:`.fts_query.parse_search`): plain words must all occur;
        ``AND``, ``OR``, ``NOT`` (or ``-word``), ``"quoted phrases"``, ``( )`` and ``word*`` (prefix)
        mean what they say.  Words are stemmed ("dogs" finds "dog", "running" finds "run") and
        irregular forms match ("child" finds "children", "men" finds "man", "ran" finds "run").
        Results are ranked: items whose saved caption matches first, then those found through their
        tags, file name or other beam candidates; within each group by bm25 (weights: caption 10,
        tags 5, file name 3, other candidates 2).
        ``sort`` other than "relevance", and the filters, are as in :meth:`browse`.  If no item
        has every word of a plain-words search, items with any of them are returned
        (``Page.match_all`` is then False).  A blank query gives :meth:`browse`'s page; a query
        with no searchable word (``%``, ``*``, a lone ``AND``, punctuation) or with nothing but
        ``NOT`` words raises GalleryError saying so.

        Every item gets ``highlight`` and ``matched_in`` (see :class:`Page`).  Video items match
        through their own caption and through their segments' captions, candidates and tags;
        each video item in the page gets ``matched_segments``: its segments (idx, start, end,
        caption) that match, best first (at most :data:`MAX_MATCHED_SEGMENTS`).
        """
        page, per_page = self._paging(page, per_page)
        text = query if isinstance(query, str) else ("" if query is None else str(query))
        filters = dict(model=model, kind=kind, saved_from=saved_from, saved_to=saved_to,
                       min_confidence=min_confidence, max_confidence=max_confidence)
        parsed = parse_search(text)
        if parsed is None:
            return self.browse(page, per_page, sort="saved_at" if sort in (None, "", "relevance") else sort,
                               descending=descending, **filters)
        where, params = self._filters(**filters)
        order = self._order(sort, descending, relevance=True)
        relevance = order.startswith("best.")
        # filters and other sorts read the items' rows; relevance alone needs only the indexes
        join = f" JOIN {TABLE} ON {TABLE}.id = best.hit" if (where or not relevance) else ""
        live = _LIVE.format(id="best.hit")
        for match_all in ((True, False) if parsed.plain else (True,)):
            fts = parsed.fts if match_all else parsed.any_fts
            wide = candidates is True or parsed.candidates
            q = {**params, "q": fts if wide else parsed.in_columns(SAVED_COLUMNS, fts),
                 "qs": fts if wide else parsed.in_columns(SAVED_SEGMENT_COLUMNS, fts),
                 "qc": parsed.in_column("caption", fts)}
            q["qsc"] = q["qc"]
            page_args = {**q, "limit": per_page, "offset": (page - 1) * per_page}
            count_sql = (f"SELECT count(*) FROM (SELECT DISTINCT hit FROM ({self._hits_sql()})) "
                         f"AS best{join} WHERE {live}{where}")
            try:
                if relevance:  # one pass: the page, and the number of hits alongside (a window function)
                    rows = self.db.execute(
                        f"""SELECT best.hit, best.tier, count(*) OVER () FROM (
                                SELECT hit, min(tier) AS tier, min(score) AS score
                                FROM ({self._hits_sql(ranked=True, tiers=True)}) GROUP BY hit
                            ) AS best{join} WHERE {live}{where} ORDER BY {order} LIMIT :limit OFFSET :offset""",
                        page_args).fetchall()
                    found = [(hit, tier) for hit, tier, _ in rows]
                    if rows:
                        total = rows[0][2]
                    else:  # past the end (or nothing found: then page 1 says so)
                        total = 0 if page == 1 else self.db.execute(count_sql, q).fetchone()[0]
                else:
                    total = self.db.execute(count_sql, q).fetchone()[0]
                if total == 0 and match_all and parsed.plain:
                    continue
                if not relevance:
                    ids = [r[0] for r in self.db.execute(
                        f"""SELECT best.hit FROM (SELECT DISTINCT hit FROM ({self._hits_sql()})) AS best{join}
                            WHERE {live}{where} ORDER BY {order} LIMIT :limit OFFSET :offset""", page_args)]
                    found = self.db.execute(
                        f"""SELECT hit, min(tier) FROM ({self._hits_sql(tiers=True)})
                            WHERE hit IN ({', '.join(str(int(i)) for i in ids) or 'NULL'}) GROUP BY hit""",
                        q).fetchall()
                    tier_of = dict(found)
                    found = [(i, tier_of.get(i, 1)) for i in ids]
                items = self._light_items([hit for hit, _ in found])
                tiers = dict(found)
                for item in items:
                    item["matched_in"] = tiers[item["id"]]
                self._add_highlights(items, parsed, wide)
                self._add_matched_segments(items, q["qs"], parsed, wide)
            except sqlite3.OperationalError as exc:
                if "fts5" in str(exc) or "syntax" in str(exc):  # should not happen: words are quoted
                    raise GalleryError(f"The search '{' '.join(text.split())[:80]}' could not be read: "
                                       "try plain words") from exc
                raise
            return self._page(items, total, page, per_page, match_all)
        return self._page([], 0, page, per_page, False)

    def _marked_columns(self, ids: list[int], expression: str) -> dict[int, list[str | None]]:
        """FTS5 highlight() of the index columns of the items ``ids``, for ``expression``.

        Run on a small in-memory FTS5 table (per connection, in the temp schema) holding only these
        items: on the gallery's own index each ``rowid = ?`` lookup re-runs the whole expression (a
        prefix like ``b*`` over 100,000 items took a second for a page).
        """
        db = self.db
        if not getattr(db, "_page_index_ready", False):
            db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{PAGE_FTS} USING fts5("
                       f"{', '.join(FTS_COLUMNS)}, tokenize='{FTS_TOKENIZE}')")
            db._page_index_ready = True
        rows = db.execute(f"SELECT id, {', '.join(FTS_COLUMNS)} FROM {TABLE} "
                          f"WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()
        db.execute(f"DELETE FROM temp.{PAGE_FTS}")
        db.conn.executemany(f"INSERT INTO temp.{PAGE_FTS} (rowid, {', '.join(FTS_COLUMNS)}) "
                            f"VALUES (?{', ?' * len(FTS_COLUMNS)})", rows)
        columns = ", ".join(f"highlight({PAGE_FTS}, {i}, '{_MARK_START}', '{_MARK_END}')"
                            for i in range(len(FTS_COLUMNS)))
        found = db.execute(f"SELECT rowid, {columns} FROM temp.{PAGE_FTS} WHERE {PAGE_FTS} MATCH ?",
                           [expression]).fetchall()
        db.execute(f"DELETE FROM temp.{PAGE_FTS}")
        return {row[0]: list(row[1:]) for row in found}

    def _add_highlights(self, items: list[dict], parsed: SearchQuery, wide: bool = True) -> None:
        """Each item's ``highlight`` (its caption as HTML, matching words in <mark>) and ``matched_in``
        (the item's tier from the search, made a name; "tier 1" named by where the words are)."""
        marked = self._marked_columns([item["id"] for item in items], parsed.highlight_fts) if items else {}
        by_column = {name: i for i, name in enumerate(FTS_COLUMNS)}
        for item in items:
            cols = marked.get(item["id"], [None] * len(FTS_COLUMNS))
            item["highlight"] = _highlight(cols[0], item["caption"])
            if item.pop("matched_in") == 0:
                item["matched_in"] = "caption"
                continue
            found = [name for name in ("tag_text", "original_name", "alternatives", "caption")
                     if cols[by_column[name]] and _MARK_START in cols[by_column[name]]
                     and (wide or name != "alternatives")]
            # a video item found through its segments' candidates (or tags) has no mark on its own columns
            item["matched_in"] = MATCHED_IN[found[0]] if found else ("candidates" if wide else "segments")

    def _add_matched_segments(self, items: list[dict], fts: str, parsed: SearchQuery, wide: bool = True) -> None:
        """Give each video item of a search page its ``matched_segments`` (idx, start, end, caption),
        best first: those matching the search, else (words spread over segments) those with any word."""
        videos = {item["id"]: item for item in items if item.get("kind") == "video"}
        for item in videos.values():
            item["matched_segments"] = []
        any_word = parsed.highlight_fts if wide else parsed.in_columns(SAVED_SEGMENT_COLUMNS, parsed.highlight_fts)
        for expression in dict.fromkeys((fts, any_word)):
            wanted = [item_id for item_id, item in videos.items() if not item["matched_segments"]]
            if not wanted:
                return
            rows = self.db.execute(
                f"""SELECT s.item_id, s.idx, s.start, s."end", s.caption
                    FROM {SEGMENTS_FTS_TABLE} JOIN {SEGMENTS_TABLE} AS s ON s.id = {SEGMENTS_FTS_TABLE}.rowid
                    WHERE {SEGMENTS_FTS_TABLE} MATCH ? AND {SEGMENTS_FTS_TABLE}.rank MATCH '{SEGMENTS_BM25_WEIGHTS}'
                      AND s.item_id IN ({", ".join("?" * len(wanted))})
                    ORDER BY {SEGMENTS_FTS_TABLE}.rank, s.idx""",
                [expression, *wanted]).fetchall()
            for item_id, idx, start, end, caption in rows:
                found = videos[item_id]["matched_segments"]
                if len(found) < MAX_MATCHED_SEGMENTS:
                    found.append({"idx": idx, "start": start, "end": end, "caption": caption})

    def models(self) -> list[str]:
        """The model names of the live items, sorted (for a filter menu)."""
        rows = self.db.execute(f"SELECT DISTINCT model_name FROM {TABLE} WHERE deleted_at IS NULL "
                               "AND model_name IS NOT NULL AND model_name != '' ORDER BY model_name").fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------ edits, trash
    def update_caption(self, item_id: int, text: str) -> None:
        """Replace an item's caption and set its ``edited_at``; the old caption goes into its
        :meth:`history` (the search index follows at once).  Setting the same text changes nothing."""
        if not isinstance(text, str):
            raise GalleryError("The caption must be text")
        if _as_id(item_id) is None:
            raise GalleryError(f"Item {item_id} does not exist")
        with self._write() as db:
            row = db.execute(f"SELECT caption, deleted_at FROM {TABLE} WHERE id = ?", [_as_id(item_id)]).fetchone()
            if row is None:
                raise GalleryError(f"Item {item_id} does not exist")
            if row[1] is not None:
                raise GalleryError(f"Item {item_id} is in the trash: restore it before editing it")
            if row[0] == text:
                return
            now = _utc_now()
            db.execute(f"INSERT INTO {HISTORY_TABLE} (item_id, caption, replaced_at) VALUES (?, ?, ?)",
                       [_as_id(item_id), row[0], now])
            db.execute(f"UPDATE {TABLE} SET caption = ?, edited_at = ? WHERE id = ?", [text, now, _as_id(item_id)])

    def history(self, item_id: int) -> list[dict]:
        """The captions an item had before its edits, oldest first: dicts with ``caption`` and
        ``replaced_at`` (UTC ISO 8601).  Empty for an item never edited (or edited before schema
        version 4 kept history); GalleryError for no such item."""
        item_id_int = _as_id(item_id)
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
        item_id = _as_id(item_id)
        if item_id is None:
            return False
        with self._write() as db:
            cursor = db.execute(f"UPDATE {TABLE} SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                                [_utc_now(), item_id])
            return cursor.rowcount > 0

    def restore(self, item_id: int) -> bool:
        """Take an item out of the trash; False if it is not in the trash."""
        item_id = _as_id(item_id)
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

    def _remove_unused_files(self, files: list[tuple[str, str | None]]) -> None:
        """Unlink those of ``files`` (image_file, video_file) that no row uses, under the write lock."""
        if not files:
            return
        with self._write() as db:
            for image_file, video_file in files:
                if not db.execute(f"SELECT 1 FROM {TABLE} WHERE image_file = ? LIMIT 1", [image_file]).fetchone():
                    with contextlib.suppress(FileNotFoundError):
                        (self.images_dir / image_file).unlink()
                video = self._video_path(video_file)
                if video and not db.execute(f"SELECT 1 FROM {TABLE} WHERE video_file = ? LIMIT 1",
                                            [video_file]).fetchone():
                    with contextlib.suppress(FileNotFoundError):
                        Path(video).unlink()

    def count(self) -> int:
        """Number of live items (not counting the trash)."""
        return self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE deleted_at IS NULL").fetchone()[0]

    def iter_items(self, *, include_trash: bool = False) -> Iterator[dict]:
        """Every live item (and those in the trash if asked), oldest first (streams)."""
        live = "" if include_trash else " WHERE deleted_at IS NULL"
        for row in self.db.query(f"SELECT {FULL} FROM {TABLE}{live} ORDER BY id"):
            yield self._with_segments(self._row_to_item(row))

    # ---------------------------------------------------------------- features
    @staticmethod
    def _feature_model(model_name: Any) -> str:
        if not isinstance(model_name, str) or not model_name.strip():
            raise GalleryError("Features need the name of the model that made them (model_name); "
                               "the gallery was not changed")
        return model_name

    @staticmethod
    def _store_features(db: sqlite_utils.Database, item_id: int, dtype: str, shape: str, blob: bytes,
                        model_name: str) -> None:
        db.execute(f"INSERT OR REPLACE INTO {FEATURES_TABLE} (item_id, model_name, dtype, shape, grid) "
                   "VALUES (?, ?, ?, ?, ?)", [item_id, model_name, dtype, shape, blob])

    def set_features(self, item_id: int, grid: Any, model_name: str) -> None:
        """Store an item's encoder features (e.g. the (N*N, C) grid) as float16, replacing any."""
        model_name = self._feature_model(model_name)
        dtype, shape, blob = _features_blob(grid)
        if _as_id(item_id) is None:
            raise GalleryError(f"Item {item_id} does not exist")
        with self._write() as db:
            if db.execute(f"SELECT 1 FROM {TABLE} WHERE id = ?", [_as_id(item_id)]).fetchone() is None:
                raise GalleryError(f"Item {item_id} does not exist")
            self._store_features(db, _as_id(item_id), dtype, shape, blob, model_name)

    def features(self, item_ids: list[int] | None = None, *, model_name: str | None = None,
                 pooled: bool = False) -> tuple[list[int], Any]:
        """Stored features of live items: (ids, float16 array (len(ids), *shape)), ids ascending.

        ``item_ids``: only these (None: all that have features); ``model_name``: only those made by
        that model.  ``pooled``: the mean over the first axis of each grid (float32, (n, C)), read
        one item at a time.  Items without features are left out; features of different shapes
        raise GalleryError (pass ``model_name``).
        """
        import numpy as np

        where, params = [_LIVE.format(id="f.item_id")], []
        if model_name is not None:
            where.append("f.model_name = ?")
            params.append(model_name)
        if item_ids is not None:
            wanted = sorted({i for i in (_as_id(x) for x in item_ids) if i is not None})
            if not wanted:
                return [], np.zeros((0,), np.float32 if pooled else np.float16)
            where.append("f.item_id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(wanted))
        rows = self.db.execute(
            f"SELECT f.item_id, f.dtype, f.shape, f.grid FROM {FEATURES_TABLE} AS f "
            f"WHERE {' AND '.join(where)} ORDER BY f.item_id", params)
        ids, arrays, first_shape = [], [], None
        for item_id, dtype, shape_text, blob in rows:
            shape = tuple(int(n) for n in shape_text.split(",")) if shape_text else ()
            if first_shape is None:
                first_shape = shape
            elif shape != first_shape:
                raise GalleryError(f"Stored features differ in shape ({first_shape} and {shape}, item "
                                   f"{item_id}): ask for one model_name")
            array = np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
            ids.append(item_id)
            arrays.append(array.astype(np.float32).mean(axis=0) if pooled else array)
        if not arrays:
            return [], np.zeros((0,), np.float32 if pooled else np.float16)
        return ids, np.stack(arrays).astype(np.float32 if pooled else np.float16, copy=False)

    def ids_without_features(self, model_name: str) -> list[int]:
        """Live items that have no features from ``model_name`` (none, or another model's), ascending."""
        rows = self.db.execute(
            f"SELECT id FROM {TABLE} WHERE deleted_at IS NULL AND id NOT IN "
            f"(SELECT item_id FROM {FEATURES_TABLE} WHERE model_name = ?) ORDER BY id", [model_name])
        return [r[0] for r in rows]

    def export(self, path: str | os.PathLike, fmt: str = "json") -> Path:
        """Write all live items to ``path`` as JSON (a list) or CSV; return the path.

        JSON holds everything, the candidates' attention maps included.  CSV holds the item
        fields (tags as a JSON string column) and the candidates as a JSON string column without
        their attention maps; video items carry their ``segments`` (for CSV a JSON string column,
        empty for photos).  The file is written to a temporary name first, so a failed export
        leaves no half file.
        """
        fmt = (fmt or "").lower()
        if fmt not in ("json", "csv"):
            raise GalleryError(f"Unknown export format '{fmt}': use 'json' or 'csv'")
        path = check_target(path, f"export.{fmt}")  # a new name or a regular file, nothing else
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
                        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
                        writer.writeheader()
                        for item in self.iter_items():
                            light = [{k: v for k, v in c.items() if k != "attention"} for c in item["candidates"]]
                            item["candidates"] = json.dumps(light, ensure_ascii=False)
                            item["tags"] = json.dumps(item["tags"], ensure_ascii=False)
                            if "segments" in item:
                                item["segments"] = json.dumps(item["segments"], ensure_ascii=False)
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
