"""A model folder's checksum list, `checksums.json`: the size and sha256 of each of its model files, written
with its ONNX runtime (`captioner.runtime.folder_runtime`), so that a loader can tell that the ONNX files
are intact and still belong to the weights beside them.

Checking a file means hashing it (about 40 MB for the shipped folder). A per-machine stat cache,
`$CAPTIONER_CACHE_DIR/onnx/verified.json` (else `~/.cache/captioner/onnx`), remembers the files already
hashed by path, size, modification time and inode, as git's index does: only the first start after an
install or a change reads the files; later starts only `stat` them. The cache is a help, never a
requirement: when it cannot be read or written, files are hashed every time.

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from captioner.atomic_write import write_atomic

CHECKSUMS = "checksums.json"
FORMAT = 1


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_checksums(folder: str | os.PathLike, names: list[str], runtime: dict) -> Path:
    """Write `checksums.json` listing `names` (files in `folder`) and `runtime` (what each ONNX file needs:
    see `captioner.runtime.folder_runtime`)."""
    folder = Path(folder)
    files = {name: {"size": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
             for name in sorted(names)}
    path = folder / CHECKSUMS
    write_atomic(path, json.dumps({"format": FORMAT, "files": files, "runtime": runtime}, indent=1) + "\n")
    return path


def read_checksums(folder: str | os.PathLike) -> dict | None:
    """The folder's checksum list, or None when it has none (or one this version cannot read)."""
    try:
        data = json.loads((Path(folder) / CHECKSUMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return None
    return data


def _stat_cache_path() -> Path:
    root = os.environ.get("CAPTIONER_CACHE_DIR") or Path.home() / ".cache" / "captioner"
    return Path(root) / "onnx" / "verified.json"


def _stat_key(st: os.stat_result) -> list:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def mismatches(folder: str | os.PathLike, names: list[str], listed: dict) -> list[str]:
    """The files of `names` that are missing or differ from the checksum list's `files` entry (`listed`); an
    empty list when all match. Files seen unchanged since they were last hashed are not read again."""
    folder = Path(folder)
    cache_path = _stat_cache_path()
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    bad, changed = [], False
    for name in names:
        want = listed.get(name)
        path = folder / name
        try:
            st = path.stat()
        except OSError:
            bad.append(name)
            continue
        if not isinstance(want, dict) or st.st_size != want.get("size"):
            bad.append(name)
            continue
        key = str(path.resolve())
        seen = cache.get(key)
        if isinstance(seen, list) and len(seen) == 4 and seen[:3] == _stat_key(st):
            digest = seen[3]
        else:
            digest = sha256_file(path)
            cache[key] = [*_stat_key(st), digest]
            changed = True
        if digest != want.get("sha256"):
            bad.append(name)
    if changed:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_path, json.dumps(cache))
        except OSError:
            pass  # a read-only home: hash again next time
    return bad
