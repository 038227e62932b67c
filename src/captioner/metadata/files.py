"""Captions written into photo files or into XMP sidecars beside them: atomic, with a backup.

* ``sidecar``: ``photo.jpg`` gets ``photo.jpg.xmp`` (the photo's full name plus ``.xmp``: the name
  digiKam and darktable read and write, and it keeps ``photo.jpg`` and ``photo.png`` apart). An
  existing sidecar is updated, its other properties kept. The photo itself is not touched.
* ``embed``: the caption goes into the file itself (XMP dc:description, EXIF ImageDescription,
  IPTC Caption-Abstract); only metadata segments change, the image data is copied byte for byte.
  JPEG, PNG, WebP and TIFF; HEIC/HEIF, GIF and BMP are refused with a one-line error (exiv2
  cannot write them).

A file about to change is first copied to ``NAME.bak`` (``photo.jpg.bak``, ``photo.jpg.xmp.bak``)
unless ``backup=False``; an existing backup is kept as it is, because it holds the file as it was
before the first caption was written. Every file is written to a temporary file in the same folder,
flushed to disk and renamed over the old one, so a crash leaves the old file or the new one, never half
of one. The file's permission bits are kept; a symbolic link is followed (the file it points to is
updated and the link stays).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

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


def _check_writable(target: Path) -> None:
    folder = target.parent
    if target.exists() and (not os.access(target, os.W_OK) or not os.stat(target).st_mode & 0o222):
        # no write bit at all: the owner made it read-only (root's access() would say yes; a rename could bypass it)
        raise MetadataError(f"{target}: the file is read-only; nothing was written (make it writable first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MetadataError(f"{target}: the folder {folder} is not writable; nothing was written")


def _keep_backup(target: Path) -> None:
    """Copy `target` to ``target.bak`` unless a backup is already there (it holds the oldest version)."""
    backup = backup_path(target)
    if backup.exists() or backup.is_symlink():
        if not backup.is_file():
            raise MetadataError(f"{backup}: is in the way of the backup (not a regular file); move it away")
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(target, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(target, tmp)  # the backup keeps the original's times and permissions
        os.link(tmp, backup)  # fails rather than overwrite a backup that appeared meanwhile
    except FileExistsError:
        pass
    except OSError as exc:
        raise MetadataError(f"{target}: could not write the backup {backup.name} ({exc.strerror or exc}); "
                            "nothing was written") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _replace_atomically(target: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `target`, flush it, then rename it over `target`."""
    mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MetadataError(f"{target}: could not be written ({exc.strerror or exc}); the file is unchanged") from None
    _fsync_folder(target.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
