"""Temporary files under ``images/`` and ``videos/``: named after the process writing them, so the next
open can tell the ones a killed process left behind from the ones another process is writing now.

A picture or video is written to ``.tmp-HOST-PID-xxxx`` beside where it belongs, then moved into place.
A process killed in between leaves that file.  :func:`is_abandoned` says a temporary file is left over
when the process named in it is gone (same host), or, for names without a process (written by an older
release) or from another host, when it is older than :data:`STALE_TEMP_S`.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"
#: Temporary files whose writer cannot be identified are assumed abandoned when older than this.
STALE_TEMP_S = 3600
HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_NAMED = re.compile(r"\.tmp-([0-9a-f]{8})-(\d+)-")


def temp_prefix() -> str:
    """The prefix of this process's temporary files (for ``tempfile.mkstemp(prefix=...)``)."""
    return f"{TEMP_PREFIX}{HOST_TAG}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid() or sys.platform == "win32":  # os.kill(pid, 0) is no probe on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user
        return True
    return True


def is_abandoned(path: Path, now: float | None = None) -> bool:
    """Whether a temporary file was left by a process that is gone (or is older than STALE_TEMP_S)."""
    match = _NAMED.match(path.name)
    if match and match.group(1) == HOST_TAG and not _alive(int(match.group(2))):
        return True
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    return age >= STALE_TEMP_S


def temp_files(images_dir: Path, videos_dir: Path) -> Iterator[Path]:
    """The temporary files in ``images/XX/``, ``videos/`` and ``videos/XX/``."""
    folders = [videos_dir]
    for parent in (images_dir, videos_dir):
        with contextlib.suppress(OSError):
            folders += [Path(e.path) for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
    for folder in folders:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                    yield Path(entry.path)


def remove_abandoned(images_dir: Path, videos_dir: Path) -> list[Path]:
    """Delete the temporary files killed processes left (see :func:`is_abandoned`); return them."""
    removed = []
    now = time.time()
    for path in list(temp_files(images_dir, videos_dir)):
        if is_abandoned(path, now):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed
