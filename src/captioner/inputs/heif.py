"""HEIC/HEIF photos (iPhones, many Android phones) through pillow-heif: register once, and Pillow opens them.

Light (no torch): the gallery and anything else that opens photos with Pillow can import it.
libheif applies the HEIF rotation itself and pillow-heif then marks the EXIF orientation as
upright, so `ImageOps.exif_transpose` does not turn the photo twice.
"""
from __future__ import annotations

HEIF_EXTENSIONS = {".heic", ".heif", ".hif"}
_registered: bool | None = None


def register_heif() -> bool:
    """Teach Pillow to open HEIC/HEIF (idempotent). False when pillow-heif is not installed: HEIC files
    are then refused as unreadable (`captioner.inputs.images` says to install pillow-heif)."""
    global _registered
    if _registered is None:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _registered = False
        else:
            register_heif_opener()
            _registered = True
    return _registered
