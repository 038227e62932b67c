"""Safe image loading and preprocessing, shared by training and inference.

Every failure becomes an `ImageError` whose message names the file and the reason.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from captioner.errors import ImageError
from captioner.inputs.heif import HEIF_EXTENSIONS, register_heif

if TYPE_CHECKING:
    import torch

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey image
# Pillow's two-line DecompressionBombWarning (over ~89 MP) is replaced by one LargeImageWarning line of ours
# (open_image); set here too because warnings.catch_warnings, used around each open, is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: Largest image (in pixels) we agree to decode: about 100 megapixels, e.g. 12000 x 8000.
MAX_PIXELS = 100_000_000
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"} | HEIF_EXTENSIONS
HEIF_READABLE = register_heif()  # everything that reads photos through this module reads HEIC too


class LargeImageWarning(UserWarning):
    """An image over Pillow's decompression-bomb warning size (about 89 MP) but within MAX_PIXELS: it is
    decoded, and the command line says so in one line (Pillow's own two-line warning is kept quiet)."""


def display_name(name: str) -> str:
    """A file name fit for a one-line message: as it is, or (when it holds a newline, a tab, an escape
    sequence or another unprintable character) quoted repr-style with those escaped, so a name cannot
    break a line or forge one."""
    name = str(name)
    return name if name.isprintable() else repr(name)


def _describe(source) -> str:
    return display_name(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "the uploaded image"


def check_image_path(path: Path, name: str) -> None:
    """Raise `ImageError` with the true reason a path cannot be an image file."""
    try:
        st = os.stat(path)  # follows symbolic links
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(f"{name}: a symbolic link loop (the link points back to itself)") from None
        if exc.errno == errno.ENOENT:
            if os.path.islink(path):
                raise ImageError(f"{name}: a broken symbolic link (its target {os.readlink(path)} does not exist)") from None
            raise ImageError(f"{name}: file not found") from None
        if exc.errno == errno.EACCES:
            raise ImageError(f"{name}: permission denied") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise ImageError(f"{name[:80]}...: the file name is too long") from None
        raise ImageError(f"{name}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{name}: is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
            else "a device"
        raise ImageError(f"{name}: not a regular file ({kind})")
    if st.st_size == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{name}: permission denied")


def open_image(source, max_pixels: int = MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Open an image file (path, bytes or file object) as an upright RGB `PIL.Image`.

    EXIF orientation is applied; any mode (L, LA, P, RGBA, CMYK, I;16, F ...) becomes RGB,
    transparent parts composited on white. `draft_size` lets JPEG decoding skip detail that a
    later resize to that size throws away (much faster for big photos).
    """
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        check_image_path(Path(source), name)
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError(f"{name}: the file is empty (0 bytes)")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours follows, in one line
            img = Image.open(source)
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{name}: the image is {w}x{h} pixels, more than the {max_pixels // 1_000_000} "
                    "megapixels this tool decodes; scale it down first"
                )
            if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
                warnings.warn(f"{name}: a very large image ({w}x{h}, {w * h / 1e6:.0f} megapixels, the limit is "
                              f"{max_pixels // 1_000_000}); decoding it takes a lot of memory", LargeImageWarning,
                              stacklevel=2)
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            img = to_rgb(ImageOps.exif_transpose(img))
            img.info["original_size"] = _upright_size(img, w, h)
            return img
    except ImageError:
        raise
    except UnidentifiedImageError:
        if not HEIF_READABLE and Path(name).suffix.lower() in HEIF_EXTENSIONS:
            raise ImageError(f"{name}: HEIC/HEIF photos need pillow-heif: pip install pillow-heif") from None
        raise ImageError(f"{name}: not an image file Pillow can read (unsupported or not an image)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: the image has far more than the {max_pixels // 1_000_000} megapixels this tool "
                         "decodes (refused as a possible decompression bomb); scale it down first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: the image data is corrupt or truncated ({exc})") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode this image") from None


def _upright_size(img: Image.Image, w: int, h: int) -> tuple[int, int]:
    """The file's full size (before JPEG draft reduction), in the orientation of `img`."""
    landscape_now, landscape_file = img.size[0] >= img.size[1], w >= h
    return (w, h) if landscape_now == landscape_file or w == h else (h, w)


def original_size(img: Image.Image) -> tuple[int, int]:
    """Width and height of the photo as stored in its file (`img` may be a reduced decode)."""
    return img.info.get("original_size", img.size)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Squash to `size` x `size` (no crop), as the Flickr8k training images were made."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)


def to_tensor(img: Image.Image, mean, std) -> torch.Tensor:
    """RGB image to a normalised float tensor (3, H, W)."""
    import torch  # here: reading and sizing images needs no torch

    arr = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (arr - m) / s


def load_for_model(source, size: int, mean, std) -> torch.Tensor:
    """File -> (3, size, size) tensor ready for the encoder."""
    return to_tensor(resize_square(open_image(source, draft_size=size), size), mean, std)
