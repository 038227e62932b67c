"""Where a command may write a file it makes (an export): a new name, or an existing regular file.

Anything else at that name is refused before any work, with one line: a folder, a symbolic link
(renaming over it would replace the link, not write where it points, and following it could write
outside the folder the user named), a FIFO, a socket or a device (as root, ``/dev/full`` used to be
replaced by a regular file).  The file itself is then written to a temporary file in the same
folder and renamed into place.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import GalleryError


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def check_target(path: str | os.PathLike, example: str = "export.json") -> Path:
    """``path`` (expanded) if it is a new name or a regular file in a folder; GalleryError otherwise."""
    path = Path(path).expanduser()
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        parent = path.parent
        if parent.exists() and not parent.is_dir():
            raise GalleryError(f"'{path}': {parent} is not a folder") from None
        return path
    except OSError as exc:
        raise GalleryError(f"'{path}': cannot use it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise GalleryError(f"'{path}' is a folder: give a file name such as {path / example}")
    if not stat.S_ISREG(mode):
        raise GalleryError(f"'{path}' is not a regular file ({_kind(mode)}): nothing was written; give a new "
                           "file name (an existing regular file is replaced)")
    return path
