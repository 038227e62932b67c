"""Captions written into photo files or into XMP sidecars beside them: atomic, with a backup.

* ``sidecar``: ``photo.jpg`` gets ``photo.jpg.xmp`` (the photo's full name plus ``.xmp``: the name
  digiKam and darktable read and write, and it keeps ``photo.jpg`` and ``photo.png`` apart). An
  existing sidecar is updated, its other properties kept. The photo itself is not touched.
* ``embed``: the caption goes into the file itself (XMP dc:description, EXIF ImageDescription,
  IPTC Caption-Abstract); only metadata segments change, the image data is copied byte for byte.
  JPEG, PNG, WebP and TIFF; HEIC/HEIF, GIF and BMP are refused with a one-line error (exiv2
  cannot write them).

A file about to change is first copied to ``NAME.bak`` (``photo.jpg.bak``, ``photo.jpg.xmp.bak``)
unless ``backup=False``. A backup name that exists is never overwritten and never taken for the backup:
when ``photo.jpg.bak`` holds other bytes (an earlier version, or a file that is not ours), the copy goes to
the first free name of ``photo.jpg.1.bak``, ``photo.jpg.2.bak``...; when one of those already holds these
very bytes, no new copy is made. Every file is written to a temporary file in the same folder, flushed to
disk and renamed over the old one, so a crash leaves the old file or the new one, never half of one. The
file's permission bits are kept.

Links (``embed``): a symbolic link is refused (writing would change a file elsewhere, perhaps outside the
folder given, and leave its backup there); a file with several hard links is refused too (the rename
would give this name a changed copy and leave the other names as they were). Write a sidecar instead, or
give the file itself. A sidecar is written beside the name given, never through a link.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from captioner.atomic_write import AtomicFile
from captioner.errors import ImageError
from captioner.metadata import exiv2
from captioner.metadata.errors import MetadataError

WRITE_MODES = ("sidecar", "embed")
BACKUP_SUFFIX = ".bak"
SIDECAR_SUFFIX = ".xmp"


def sidecar_path(path: str | os.PathLike) -> Path:
    """``photo.jpg`` -> ``photo.jpg.xmp``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def backup_path(path: str | os.PathLike) -> Path:
    """``photo.jpg`` -> ``photo.jpg.bak``."""
    path = Path(path)
    return path.with_name(path.name + BACKUP_SUFFIX)


def write_caption(path: str | os.PathLike, caption: str, mode: str = "sidecar", backup: bool = True) -> Path:
    """Write `caption` as the photo's description; return the file written (the sidecar or the photo).

    Raises `MetadataError` (one line naming the file and what to do) and changes nothing on failure.
    """
    name = str(path)
    if mode not in WRITE_MODES:
        raise MetadataError(f"unknown metadata mode '{mode}': use 'sidecar' or 'embed'")
    photo = _checked_photo(Path(path), name)
    if mode == "sidecar":
        target = sidecar_path(path)  # beside the name the user sees (a link's sidecar sits beside the link)
        existing = _read_existing(target)
        new = exiv2.sidecar_with_caption(existing, caption, str(target))
    else:
        _check_not_linked(Path(path), name)
        target, existing = photo, _read_bytes(photo, name)
        new = exiv2.embed_caption(existing, caption, name)
    _check_writable(target)
    if backup and existing is not None:
        _keep_backup(target)
    _replace_atomically(target, new)
    return target


def read_caption(path: str | os.PathLike) -> dict:
    """The descriptions a photo carries: ``{"xmp", "exif", "iptc", "sidecar"}`` (None where absent).

    ``sidecar`` is the dc:description of ``photo.jpg.xmp``, or else of ``photo.xmp`` (Lightroom's
    name for raw files). Formats exiv2 cannot read (e.g. BMP) give None for the embedded fields.
    """
    name = str(path)
    photo = _checked_photo(Path(path), name)
    try:
        found = exiv2.read_embedded(_read_bytes(photo, name), name)
    except MetadataError:
        found = {"xmp": None, "exif": None, "iptc": None}
    found["sidecar"] = None
    for candidate in (sidecar_path(path), Path(path).with_suffix(SIDECAR_SUFFIX)):
        data = _read_existing(candidate)
        if data is not None:
            found["sidecar"] = exiv2.read_sidecar(data, str(candidate))
            break
    return found


def photo_with_caption(image_bytes: bytes, caption: str, name: str = "the photo") -> bytes:
    """A copy of the photo's bytes with XMP dc:description, EXIF ImageDescription (and IPTC
    Caption-Abstract where the format has it) set to `caption`; the image data is untouched.
    For a download ("the photo with its caption"); raises `MetadataError` for formats exiv2 cannot
    write (HEIC, GIF, BMP)."""
    return exiv2.embed_caption(bytes(image_bytes), caption, name)


def xmp_sidecar(caption: str, existing: bytes | None = None) -> bytes:
    """The bytes of an XMP sidecar holding `caption` as dc:description (`existing`'s other properties
    kept): for a download beside a photo whose format cannot hold it (``photo.heic.xmp``)."""
    return exiv2.sidecar_with_caption(existing, caption, "the sidecar")


# ------------------------------------------------------------------ files
def _checked_photo(path: Path, name: str) -> Path:
    """The real file behind `path` (links followed); MetadataError when it is not a readable file."""
    from captioner.inputs.images import check_image_path

    try:
        check_image_path(path, name)
    except ImageError as exc:
        raise MetadataError(str(exc)) from None
    return Path(os.path.realpath(path))


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"{name}: cannot be read ({exc.strerror or exc})") from None


def _read_existing(path: Path) -> bytes | None:
    """The bytes of a sidecar or backup that may not exist yet (None then)."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():
        raise MetadataError(f"{path}: is in the way (not a regular file); move it away and write again")
    return _read_bytes(path, str(path))


def _check_not_linked(path: Path, name: str) -> None:
    """Refuse (for embed) a symbolic link and a file with other hard links."""
    if path.is_symlink():
        raise MetadataError(f"{name}: is a symbolic link (to {os.readlink(path)}); embedding would change that "
                            "file instead, so nothing was written: give the file itself, or write a sidecar")
    links = os.stat(path).st_nlink
    if links > 1:
        raise MetadataError(f"{name}: the file has {links} hard links (other names for the same data); embedding "
                            "would give this name a changed copy and leave the others as they were, so nothing "
                            "was written: write a sidecar, or make it a separate copy first")


def _check_writable(target: Path) -> None:
    folder = target.parent
    if target.exists() and (not os.access(target, os.W_OK) or not os.stat(target).st_mode & 0o222):
        # no write bit at all: the owner made it read-only (root's access() would say yes; a rename could bypass it)
        raise MetadataError(f"{target}: the file is read-only; nothing was written (make it writable first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MetadataError(f"{target}: the folder {folder} is not writable; nothing was written")


MAX_BACKUPS = 1000


def backup_names(target: Path):
    """``photo.jpg.bak``, then ``photo.jpg.1.bak``, ``photo.jpg.2.bak``... (at most MAX_BACKUPS)."""
    yield backup_path(target)
    for n in range(1, MAX_BACKUPS):
        yield target.with_name(f"{target.name}.{n}{BACKUP_SUFFIX}")


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if not b.is_file() or b.is_symlink() or a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _keep_backup(target: Path) -> Path:
    """Copy `target` to the first free backup name (see the module docstring); return the backup holding
    its bytes (an existing one when it already does). Never overwrites a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(target, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(target, tmp)  # the backup keeps the original's times and permissions
        for backup in backup_names(target):
            if os.path.lexists(backup):
                if _same_bytes(target, backup):
                    return backup  # these bytes are backed up already
                continue  # another version, or not ours: never overwritten
            try:
                os.link(tmp, backup)  # fails rather than overwrite a file that appeared meanwhile
                return backup
            except FileExistsError:
                continue
        raise MetadataError(f"{target}: {MAX_BACKUPS} backup names are taken ({target.name}.bak, "
                            f"{target.name}.1.bak ...); nothing was written: remove old backups")
    except OSError as exc:
        raise MetadataError(f"{target}: could not write a backup ({exc.strerror or exc}); "
                            "nothing was written") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _replace_atomically(target: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `target` (with `target`'s permissions), force it to disk, then
    rename it over `target`."""
    mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else None
    try:
        with AtomicFile(target, "wb", fsync=True) as out:
            out.write(data)
            if mode is not None:
                os.chmod(out.fileno(), mode)
    except OSError as exc:
        raise MetadataError(f"{target}: could not be written ({exc.strerror or exc}); the file is unchanged") from None
