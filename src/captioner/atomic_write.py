"""Writing a file all at once: a reader, another writer or a crash sees the old file or the complete new one,
never a part.

The new content goes to a hidden temporary file beside the target (``.NAME.PID-RANDOM.tmp``: its own for each
writer, so writers racing for one file each write a complete one), which ``os.replace`` then moves onto the
target in one step (or, with ``exclusive=True``, is linked there only if nothing is there yet: a new file never
replaces one). With ``fsync=True`` the file's bytes and then the folder's entry are forced to disk, so the
new file also survives a power cut; without it a crash may lose the new file but never leaves a torn one.

* ``atomic_path(path)``: a temporary path to hand to a library that writes by name (``torch.save``,
  ``np.savez``, an ONNX export);
* ``AtomicFile(path, "w")``: the temporary file, open, for writing by hand (it is created at once, so a
  folder that cannot take it fails before anything is written);
* ``write_atomic(path, data)``: text or bytes in one call.
"""
from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


def temp_path(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A temporary name beside `path`, hidden and unique to this writer. `suffix` keeps the ending a library
    insists on (``np.savez`` adds ``.npz`` to any other name)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}")


def fsync_folder(folder: str | os.PathLike) -> None:
    """Force a folder's entries (a file moved into it) to disk; a no-op where folders cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path, fsync: bool, exclusive: bool = False) -> None:
    if exclusive:
        _link(tmp, path)
    else:
        os.replace(tmp, path)
    if fsync:
        fsync_folder(path.parent)


def _link(tmp: Path, path: Path) -> None:
    """Put `tmp` at `path` unless something is there (FileExistsError): a hard link, which never replaces
    a file; a rename where the file system has no hard links."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, suffix: str = ".tmp",
                exclusive: bool = False) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: save(obj, tmp)``: whatever the block writes at `tmp` is moved onto `p`
    when it ends without an error; on an error `p` is untouched and `tmp` is removed.  ``exclusive``: a
    file already at `p` is kept and FileExistsError raised (the new one is removed)."""
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        _commit(tmp, path, fsync, exclusive)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicFile:
    """``with AtomicFile(p, "w", encoding="utf-8") as f: f.write(...)``: `f` is the temporary file, created
    (with the permissions of any new file) when the object is made; a clean exit moves it onto `p`, an error
    removes it and leaves `p` as it was."""

    def __init__(self, path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False,
                 encoding: str | None = None, newline: str | None = None):
        if mode not in ("w", "wb"):
            raise ValueError(f"AtomicFile writes a new file: mode 'w' or 'wb', not {mode!r}")
        self.path, self.fsync = Path(path), fsync
        self.tmp = temp_path(self.path)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            self.file = os.fdopen(fd, mode, encoding=encoding, newline=newline)
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def __enter__(self):
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            with self.file:  # closed (and so flushed) here, error or not
                if exc_type is None and self.fsync:
                    self.file.flush()
                    os.fsync(self.file.fileno())
            if exc_type is None:
                _commit(self.tmp, self.path, self.fsync)
        finally:
            self.tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: str | bytes, *, fsync: bool = False,
                 encoding: str = "utf-8") -> None:
    """Write `data` (text as `encoding`, or bytes) to `path` all at once."""
    if isinstance(data, str):
        data = data.encode(encoding)
    with AtomicFile(path, "wb", fsync=fsync) as f:
        f.write(data)
