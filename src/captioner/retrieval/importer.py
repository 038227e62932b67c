"""Bulk import: caption every photo of some folder trees and store each in the gallery with its
encoder features (for find-by-description and more-like-this).

Resumable by construction: each photo is stored as soon as it is captioned, and photos whose bytes
(sha256) are already in the gallery are skipped before any work is done, so running the same import
again adds nothing and an interrupted one continues where it stopped. A file that cannot be read or
stored is reported (name and reason) and skipped; the others go on. A full disk stops the import at once
with a `DiskFullError` (the photos stored so far stay, no picture file is left without its row), since
every photo after it would fail the same way: run it again once there is room.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from captioner.inputs.images import IMAGE_EXTENSIONS
from captioner.inputs.sources import InputItem, expand_inputs

#: progress(done, total, name): called after each photo (imported, skipped or failed)
ImportProgress = Callable[[int, int, str], None]


@dataclass
class ImportReport:
    added: list[int] = field(default_factory=list)             # new item ids
    skipped: list[str] = field(default_factory=list)           # files already in the gallery
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def to_dict(self) -> dict:
        return {"added": self.added, "skipped": self.skipped,
                "failed": [{"file": f, "error": e} for f, e in self.failed]}


def file_sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None  # reported when it is captioned
    return h.hexdigest()


def stored_hashes(gallery) -> set[str]:
    """The sha256 of every live photo in the gallery."""
    from captioner.storage.schema import TABLE

    return {r[0] for r in gallery.db.execute(f"SELECT image_hash FROM {TABLE} WHERE deleted_at IS NULL")}


def import_folders(gallery, captioner, paths: Iterable[str], *, progress: ImportProgress | None = None,
                   on_failure: Callable[[str, str], None] | None = None, batch_size: int = 8,
                   decoding=None) -> ImportReport:
    """Caption and store every photo under `paths` (folders searched recursively, files as given).
    `progress(done, total, file)` follows the work; `on_failure(file, reason)` hears of each bad file
    as it happens (they are all in the report's `failed` too)."""
    import sqlite3

    from captioner.storage.errors import DiskFullError, DuplicateItemError, GalleryError, is_disk_full

    files = expand_inputs([str(Path(p).expanduser()) for p in paths], IMAGE_EXTENSIONS)
    report = ImportReport()
    known = stored_hashes(gallery)
    todo: list[str] = []
    total = len(files)
    done = 0
    for path in files:
        digest = file_sha256(path)
        if digest is not None and digest in known:
            report.skipped.append(path)
            done += 1
            if progress:
                progress(done, total, path)
            continue
        if digest is not None:
            known.add(digest)  # the same bytes twice in one import: the second is a duplicate
        todo.append(path)
    items = [InputItem(p, p) for p in todo]
    for path, result in zip(todo, captioner.caption_many(items, decoding, batch_size=batch_size, keep_features=True)):
        reason = None
        if result.error is not None or not result.candidates:
            reason = result.error or "no caption"
            if reason.startswith(f"{path}: "):  # the file is named once, by the report line
                reason = reason[len(path) + 2 :]
        else:
            try:
                item_id = gallery.save_result(path, result, name=Path(path).name, model=captioner.name)
                report.added.append(item_id)
            except DuplicateItemError:
                report.skipped.append(path)
            except (GalleryError, sqlite3.OperationalError, OSError) as exc:
                if is_disk_full(exc):
                    raise DiskFullError(
                        f"The disk holding the gallery at '{gallery.folder}' is full: {len(report.added)} photo(s) "
                        f"were added before it filled up, none half-written; free some space and run the same "
                        f"command again (photos already in the gallery are skipped)") from exc
                if not isinstance(exc, GalleryError):
                    raise
                reason = str(exc)
        if reason is not None:
            report.failed.append((path, reason))
            if on_failure:
                on_failure(path, reason)
        done += 1
        if progress:
            progress(done, total, path)
    return report
