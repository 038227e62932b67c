"""Captions written into photos' metadata, so photo managers (digiKam, Lightroom, Apple and Google
Photos on import) show them.

    from captioner.metadata import write_caption, read_caption, photo_with_caption

    write_caption("photo.jpg", "a dog runs on the beach")                  # photo.jpg.xmp beside it
    write_caption("photo.jpg", "a dog runs on the beach", mode="embed")    # into the file; photo.jpg.bak kept
    read_caption("photo.jpg")            # {"xmp": ..., "exif": ..., "iptc": ..., "sidecar": ...}
    data = photo_with_caption(open("photo.jpg", "rb").read(), "a dog")    # bytes, for a download

Exiv2 (pyexiv2) does the reading and writing; see `files` for the file rules (atomic, backups)
and `exiv2` for the fields.
"""
from captioner.metadata.alt_text import html_alt_snippet, write_html_alt
from captioner.metadata.errors import MetadataError
from captioner.metadata.files import (
    WRITE_MODES,
    backup_path,
    photo_with_caption,
    read_caption,
    sidecar_path,
    write_caption,
    xmp_sidecar,
)

__all__ = ["WRITE_MODES", "MetadataError", "backup_path", "html_alt_snippet", "photo_with_caption", "read_caption",
           "sidecar_path", "write_caption", "write_html_alt", "xmp_sidecar"]
