"""The one error type of the storage package."""
from captioner.errors import CaptionerError


class GalleryError(CaptionerError):
    """A problem the user can act on: bad input, missing item, unreadable gallery."""


class DuplicateItemError(GalleryError):
    """The same photo (same bytes) with the same caption is already in the gallery."""

    def __init__(self, message: str, item_id: int):
        super().__init__(message)
        self.item_id = item_id


class DiskFullError(GalleryError):
    """The disk (or quota) holding the gallery is full: stop, nothing half-written, resumable."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is SQLite's "database or disk is full" or ENOSPC / EDQUOT."""
    import errno
    import sqlite3

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
