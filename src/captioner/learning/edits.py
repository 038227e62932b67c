"""The user's corrections to learn from: (photo, caption) pairs read from a gallery or a JSON Lines file.

A gallery edit is a live photo item whose caption was edited (`edited_at` set); its caption is what the
user wrote, its earlier caption (`Gallery.history`) what the model said. Items left as the model
captioned them are *anchors*: photos the model may keep describing its own way (distillation).
The gallery is only read (`Gallery` opened read-only when it can be).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captioner.atomic_write import atomic_path
from captioner.errors import DataError
from captioner.model.vocab import Vocab, tokenize

#: fewer edits than this are not worth a model
MIN_EDITS = 5


@dataclass
class Edit:
    """One photo and the caption the user wants for it. `key`: a stable name (gallery item id or
    JSONL line); `features`: the encoder grid (P, C) float16 once known."""

    key: str
    image: str
    caption: str
    before: str | None = None
    features: np.ndarray | None = field(default=None, repr=False)

    @property
    def words(self) -> list[str]:
        return tokenize(self.caption)


def check_caption(edit: Edit, vocab: Vocab) -> str | None:
    """Why this caption cannot be learned from (None: it can): no words, or not one word the model
    knows (another language, or gibberish: new words are learned only beside known ones)."""
    words = edit.words
    if not words:
        return f"{edit.key}: the caption has no words"
    if not any(w in vocab.stoi for w in words):
        return f"{edit.key}: the caption {edit.caption!r} has only words the model does not know"
    return None


def edits_from_jsonl(path: str | Path) -> list[Edit]:
    """`{"image": path, "caption": text}` per line (paths relative to the file's folder); one clear line
    (DataError) for an unreadable file or a bad line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--captions {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    edits = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DataError(f"--captions {path}, line {n}: not JSON (expected {{\"image\": path, \"caption\": text}})") from None
        if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not isinstance(row.get("caption"), str):
            raise DataError(f"--captions {path}, line {n}: expected {{\"image\": path, \"caption\": text}}")
        image = Path(row["image"]).expanduser()
        if not image.is_absolute():
            image = path.parent / image
        edits.append(Edit(f"line {n}", str(image), row["caption"].strip()))
    return edits


def open_gallery(folder: str | Path):
    """The gallery at `folder` opened for reading; DataError when there is none."""
    from captioner.storage.errors import GalleryError
    from captioner.storage.gallery import DB_NAME, Gallery

    folder = Path(folder).expanduser()
    if not (folder / DB_NAME).is_file():
        raise DataError(f"--gallery {folder}: no gallery there ({DB_NAME} is missing)")
    try:
        return Gallery(folder, read_only=True)
    except GalleryError:  # an older schema needs its upgrade first: the gallery's own opening does it
        return Gallery(folder)


def edits_from_gallery(gallery, feature_models: tuple[str, ...] = ()) -> tuple[list[Edit], list[Edit]]:
    """(edits, anchors) of a gallery: edited live photos, and live photos never edited (their caption
    the model's own). Stored features made by one of `feature_models` are attached."""
    from captioner.storage.schema import TABLE

    rows = gallery.db.execute(
        f"SELECT id, caption, image_file, edited_at FROM {TABLE} WHERE deleted_at IS NULL AND kind = 'photo' "
        "ORDER BY id").fetchall()
    edits, anchors = [], []
    for item_id, caption, image_file, edited_at in rows:
        image = str(gallery.images_dir / image_file)
        if edited_at is not None:
            history = gallery.history(item_id)
            before = history[0]["caption"] if history else None
            if before is not None and tokenize(before) == tokenize(caption):
                continue  # only punctuation or case changed
            edits.append(Edit(f"item {item_id}", image, caption.strip(), before))
        else:
            anchors.append(Edit(f"item {item_id}", image, caption.strip(), caption))
    by_id = {int(e.key.split()[1]): e for e in edits + anchors}
    for name in feature_models:
        missing = [i for i, e in by_id.items() if e.features is None]
        if not missing:
            break
        ids, grids = gallery.features(missing, model_name=name)
        for i, grid in zip(ids, grids):
            by_id[i].features = grid.reshape(-1, grid.shape[-1])
    return edits, anchors


def encode_missing(edits: list[Edit], encode, cache: Path | None = None, progress=None) -> list[str]:
    """Give every edit without features its encoder grid: `encode(paths) -> list of (P, C) arrays or
    error strings`. Grids are kept in `cache` (an .npz, reused by a resumed run). Returns the error
    lines of photos that could not be read (those edits are left without features)."""
    stored = {}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    todo = []
    for e in edits:
        if e.features is None and e.image in stored:
            e.features = stored[e.image]
        elif e.features is None:
            todo.append(e)
    errors = []
    for s in range(0, len(todo), 16):
        chunk = todo[s : s + 16]
        for e, grid in zip(chunk, encode([e.image for e in chunk])):
            if isinstance(grid, str):
                errors.append(f"{e.key}: {grid}")
            else:
                e.features = np.asarray(grid, dtype=np.float16)
                stored[e.image] = e.features
        if progress:
            progress("encoding photos without stored features", min(s + 16, len(todo)), len(todo))
    if todo and cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, suffix=".npz") as tmp:
            np.savez(tmp, **stored)
    return errors


def usable_edits(edits: list[Edit], vocab: Vocab, warn=None) -> list[Edit]:
    """The edits that can be learned from; one line to `warn` (default: stderr) for each left out."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    out = []
    for e in edits:
        why = "its photo could not be read" if e.features is None else check_caption(e, vocab)
        if why is None:
            out.append(e)
        else:
            warn(f"left out: {why if why.startswith(e.key) else f'{e.key}: {why}'}")
    return out
