"""The studio's files: uploads (only Gradio's own, checked), a folder import staged under safe names, the
Gallery grid's thumbnails and downloads, all in the studio's temporary folder (never the gallery's)."""
from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

import gradio as gr

from captioner.studio import render
from captioner.studio.values import file_paths, is_inside

log = logging.getLogger("captioner.studio")

#: Characters kept in the name of a downloaded or imported file.
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def uploads(files, upload_dir: Path | None, what: str, refusal: str) -> list[str]:
    """The paths of a File value, each one an upload in ``upload_dir`` (None: any path, for Python callers and
    tests); one that is not is logged (as ``what``, e.g. "a photo") and refused with ``refusal`` (a `gr.Error`)."""
    paths = file_paths(files)
    if upload_dir is not None:
        for path in paths:
            if not is_inside(path, upload_dir):
                log.warning("studio: refused %s that is not an upload: %s", what, path)
                raise gr.Error(refusal, print_exception=False)
    return paths


def stage(paths: list[str], folder: Path) -> list[Path]:
    """The uploads in one folder of the studio's own, under their own names (hard links where possible)."""
    folder.mkdir(parents=True, exist_ok=True)
    staged, used = [], set()
    for path in paths:
        name = SAFE_NAME.sub("_", Path(path).name).strip("._") or "photo"
        stem, suffix, n = Path(name).stem, Path(name).suffix, 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}{suffix}"
        used.add(name.lower())
        target = folder / name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        staged.append(target)
    return staged


def thumbnail(source: Path, target: Path, size: int) -> str:
    """A JPEG of the photo ``source`` at most ``size`` pixels a side, written at ``target`` (kept: the same
    name is the same photo); its path."""
    if target.exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    img = render.load_photo(source, size // 2)
    img.thumbnail((size, size))
    tmp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    img.save(tmp, format="JPEG", quality=85)
    os.replace(tmp, target)
    return str(target)


def download_name(original_name: str | None, suffix: str) -> str:
    """The name of a photo downloaded with its caption: its own stem (safe characters only) and ``-captioned``."""
    stem = SAFE_NAME.sub("-", Path(original_name or "photo").stem).strip("-.")[:60] or "photo"
    return f"{stem}-captioned{suffix}"


def write_download(target: Path, data: bytes) -> str:
    """Write a file for the browser to download, all at once; its path."""
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return str(target)


def prune(folder: Path, keep_s: float = 3600) -> None:
    """Remove the download folders older than ``keep_s`` (an hour: the browser has them by then)."""
    now = time.time()
    for sub in folder.iterdir() if folder.is_dir() else []:
        try:
            if sub.is_dir() and now - sub.stat().st_mtime > keep_s:
                shutil.rmtree(sub, ignore_errors=True)
        except OSError:
            pass
