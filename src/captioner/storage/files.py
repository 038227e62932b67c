"""The gallery's picture and video files, each stored once under the name of its content's sha256:
``images/ab/abcdef....jpg`` and ``videos/ab/abcdef....mp4``.

A file is written to a temporary file of this process (named by :mod:`.tempfiles`, so a later open can
tell one a killed process left) and moved into place with ``os.replace`` before its row is inserted.
Files are only ever deleted while holding the database write lock.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from . import tempfiles
from .errors import GalleryError
from .schema import TABLE

IMAGES_DIR = "images"
VIDEOS_DIR = "videos"
COPY_CHUNK = 1 << 20
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif",
              "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


@dataclass
class EncodedImage:
    data: bytes
    ext: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def encode_image(image: Any, label: str) -> EncodedImage:
    """Read ``image`` (bytes, a path or a PIL image) into checked, encoded bytes.

    Bytes and files are kept exactly as they are (after checking that they
    decode); a PIL image is encoded as PNG.  Raises GalleryError otherwise.
    """
    def fail(reason: Any) -> GalleryError:
        return GalleryError(f"Could not read the image '{label}': {reason}; "
                            "the gallery was not changed")

    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        try:
            try:
                image.save(buffer, format="PNG")
            except (OSError, ValueError, KeyError):  # a mode PNG cannot hold, e.g. CMYK
                buffer = io.BytesIO()
                image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buffer, format="PNG")
        except Exception as exc:
            raise fail(exc) from exc
        return EncodedImage(buffer.getvalue(), "png", image.width, image.height)

    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            raise fail(exc.strerror or exc) from exc
    else:
        raise fail(f"expected bytes, a file path or a PIL image, got {type(image).__name__}")
    if not data:
        raise fail("the data is empty")
    try:
        with warnings.catch_warnings():  # over ~89 MP: the caption step already said so, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            width, height, fmt = img.width, img.height, img.format
            img.draft(img.mode, (256, 256))  # JPEG: decode at reduced scale, still reads it all
            img.load()  # raises on truncated or corrupt data
    except Exception as exc:
        raise fail(exc) from exc
    return EncodedImage(data, EXTENSIONS.get(fmt or "", (fmt or "img").lower()), width, height)


def video_ext(head: bytes, name: str) -> str:
    """The file extension for a video: from its first bytes, else from its name, else 'bin'."""
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"OggS":
        return "ogv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpg"
    suffix = Path(name).suffix[1:].lower()
    return suffix if re.fullmatch(r"[a-z0-9]{1,8}", suffix) else "bin"


def placeholder_poster() -> Image.Image:
    """A small neutral picture (grey, a lighter 'play' triangle) for a video saved without a poster."""
    from PIL import ImageDraw

    img = Image.new("RGB", (160, 90), (96, 96, 96))
    ImageDraw.Draw(img).polygon([(66, 27), (66, 63), (98, 45)], fill=(200, 200, 200))
    return img


def write_temp(folder: Path, chunks: Iterable[bytes]) -> str:
    """Write ``chunks`` to a new temporary file of this process in ``folder``, fsynced; return its path.
    On an error it is removed."""
    fd, tmp = tempfile.mkstemp(prefix=tempfiles.temp_prefix(), dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


class FilesMixin:
    """The picture and video files of :class:`~.gallery.Gallery` (``folder``, ``images_dir``,
    ``videos_dir``; ``_write`` for the lock)."""

    def _image_file(self, encoded: EncodedImage) -> tuple[str, str]:
        digest = encoded.sha256
        return digest, f"{digest[:2]}/{digest}.{encoded.ext}"

    def _write_image(self, encoded: EncodedImage, rel: str, force: bool = False) -> None:
        """Put the image at images/<rel> atomically (temp file + fsync + os.replace)."""
        target = self.images_dir / rel
        if target.exists() and not force:
            return  # same content already stored
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = write_temp(target.parent, [encoded.data])
        try:
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _video_path(self, rel: str | None) -> str | None:
        """The absolute path of a stored ``videos/...`` path (None: none, or one leading elsewhere)."""
        if not rel:
            return None
        parts = rel.replace("\\", "/").split("/")
        if parts[0] != VIDEOS_DIR or len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or ":" in rel:
            return None
        return str(self.folder.joinpath(*parts))

    def _copy_video(self, video: Any, label: str) -> tuple[str, str]:
        """Copy the video into a temporary file under videos/ (hashing it on the way, fsynced);
        return that file and the path, relative to the gallery folder, it belongs at."""
        if isinstance(video, (str, os.PathLike)):
            try:
                source = open(video, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise GalleryError(f"Could not read the video '{label}': {exc.strerror or exc}; "
                                   "the gallery was not changed") from exc
        else:
            source = io.BytesIO(bytes(video))
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        digest, size, head = hashlib.sha256(), 0, b""

        def chunks() -> Iterable[bytes]:
            nonlocal size, head
            while chunk := source.read(COPY_CHUNK):
                if not head:
                    head = chunk[:64]
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        with source:
            tmp = write_temp(self.videos_dir, chunks())
        try:
            if not size:
                raise GalleryError(f"Could not read the video '{label}': the data is empty; "
                                   "the gallery was not changed")
            name = digest.hexdigest()
            rel = f"{VIDEOS_DIR}/{name[:2]}/{name}.{video_ext(head, label)}"
            (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp, rel

    def _remove_unused_files(self, files: list[tuple[str, str | None]]) -> None:
        """Unlink those of ``files`` (image_file, video_file) that no row uses, under the write lock."""
        if not files:
            return
        with self._write() as db:
            for image_file, video_file in files:
                if not db.execute(f"SELECT 1 FROM {TABLE} WHERE image_file = ? LIMIT 1", [image_file]).fetchone():
                    with contextlib.suppress(FileNotFoundError):
                        (self.images_dir / image_file).unlink()
                video = self._video_path(video_file)
                if video and not db.execute(f"SELECT 1 FROM {TABLE} WHERE video_file = ? LIMIT 1",
                                            [video_file]).fetchone():
                    with contextlib.suppress(FileNotFoundError):
                        Path(video).unlink()
