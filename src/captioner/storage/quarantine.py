"""`captioner gallery repair` moves orphaned files (picture and video files no item uses) into
``quarantine/`` inside the gallery instead of deleting them, and refuses when too many would go.

An orphan is normally what a crash leaves: a file written just before its row, or one whose item was
removed for good just before the file.  That is a handful of files.  When a large share of the files
look orphaned, the database is far more likely to be the one that is wrong (emptied, replaced, an old
backup), so ``repair`` moves nothing and says so.  The rule: at most :data:`MAX_FILES` files, and at
most :data:`MAX_SHARE` of the gallery's picture and video files (but always :data:`ALWAYS_ALLOWED`);
``--force`` moves them anyway (still into the quarantine, never deleting).

Layout: ``quarantine/YYYYmmddTHHMMSSZ/images/ab/abcd....jpg``, the file's own path kept, so moving it
back is ``mv quarantine/STAMP/images/ab/... images/ab/``.  ``repair --purge`` deletes the quarantine.
Temporary files left by killed processes are deleted, not quarantined (they are incomplete copies).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import GalleryError
from .opening import RECOVER, count_media
from .tempfiles import TEMP_PREFIX

QUARANTINE_DIR = "quarantine"
MAX_FILES = 20
MAX_SHARE = 0.10
ALWAYS_ALLOWED = 2


class TooManyOrphansError(GalleryError):
    """More files look orphaned than repair moves without --force."""


@dataclass
class QuarantineReport:
    moved: list[Path] = field(default_factory=list)      # where each file went
    deleted_temp: list[Path] = field(default_factory=list)
    folder: Path | None = None                            # quarantine/STAMP (None: nothing moved)


def allowed(total: int) -> int:
    """How many orphans repair moves without --force, for a gallery of ``total`` picture/video files."""
    return min(MAX_FILES, max(ALWAYS_ALLOWED, int(total * MAX_SHARE)))


def quarantine_orphans(gallery, force: bool = False) -> QuarantineReport:
    """Move the gallery's orphaned files into ``quarantine/STAMP/`` (under the write lock, so no save is
    mid-way); refuse (TooManyOrphansError, nothing moved) when too many would go and not ``force``."""
    report = QuarantineReport()
    with gallery._write() as db:
        orphans = list(gallery._orphans(db))
        temps = [p for p in orphans if p.name.startswith(TEMP_PREFIX)]
        files = [p for p in orphans if not p.name.startswith(TEMP_PREFIX)]
        total = count_media(gallery.folder)
        if len(files) > allowed(total) and not force:
            raise TooManyOrphansError(
                f"repair would move {len(files)} of the {total} picture and video files to the quarantine (no item "
                f"uses them); it moves at most {allowed(total)} (20 files, and a tenth of the gallery) without "
                f"--force, because so many orphans usually mean the database is the one that is wrong. Nothing "
                f"was moved; if the database is an old or damaged copy, {RECOVER}; if you are sure, run "
                f"`captioner gallery repair --force` (the files are moved, not deleted)")
        for path in temps:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                report.deleted_temp.append(path)
        if files:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            report.folder = _free_folder(gallery.folder / QUARANTINE_DIR, stamp)
            for path in files:
                dest = report.folder / path.relative_to(gallery.folder)
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(path, dest)
                except FileNotFoundError:
                    continue
                report.moved.append(dest)
    return report


def _free_folder(parent: Path, stamp: str) -> Path:
    for n in range(1000):
        folder = parent / (stamp if n == 0 else f"{stamp}.{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise GalleryError(f"{parent}: too many quarantine folders named {stamp}*")


def quarantined(folder: Path) -> list[Path]:
    """The files in the gallery's quarantine."""
    return sorted(p for p in (folder / QUARANTINE_DIR).rglob("*") if p.is_file() or p.is_symlink())


def purge(folder: Path) -> int:
    """Delete everything in the gallery's quarantine; return how many files went."""
    files = quarantined(folder)
    root = folder / QUARANTINE_DIR
    if root.is_dir() and not root.is_symlink():
        for entry in list(root.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return len(files)
