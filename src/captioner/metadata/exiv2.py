"""The only module that talks to exiv2 (through pyexiv2): captions into and out of image bytes.

Everything works on bytes in memory, so callers decide how files are written (atomically, with
a backup). Exiv2 rewrites only the metadata segments (JPEG APPn, PNG text chunks, WebP/TIFF
metadata); the compressed image data is copied through unchanged.

Written fields:
  XMP   dc:description (a language alternative, x-default)
  EXIF  ImageDescription (UTF-8 bytes, as exiftool, exiv2 and digiKam read it)
  IPTC  Caption-Abstract, with the coded character set marked as UTF-8 (not in WebP: exiv2 cannot)
"""
from __future__ import annotations

import threading
import unicodedata

from captioner.metadata.errors import MetadataError

XMP_DESCRIPTION = "Xmp.dc.description"
EXIF_DESCRIPTION = "Exif.Image.ImageDescription"
IPTC_CAPTION = "Iptc.Application2.Caption"
IPTC_CHARSET = "Iptc.Envelope.CharacterSet"
IPTC_UTF8 = "\x1b%G"
#: IPTC IIM limits Caption-Abstract to 2000 bytes.
IPTC_CAPTION_MAX_BYTES = 2000
#: Longest caption accepted (characters); a caption is a sentence, not a document.
MAX_CAPTION_CHARS = 10_000

#: MIME type (as exiv2 reports it) -> (format name, embedding writes IPTC too).
WRITABLE = {"image/jpeg": ("JPEG", True), "image/png": ("PNG", True), "image/webp": ("WebP", False),
            "image/tiff": ("TIFF", True)}
_NAMES = {"image/heic": "HEIC", "image/heif": "HEIF", "image/avif": "AVIF", "image/gif": "GIF",
          "image/bmp": "BMP", "image/x-ms-bmp": "BMP", "image/jp2": "JPEG 2000"}

#: An empty XMP packet, the start of a new sidecar file.
EMPTY_XMP = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
             '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
             ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>\n'
             '</x:xmpmeta>\n<?xpacket end="w"?>\n').encode("utf-8")

_lock = threading.Lock()  # exiv2's XMP toolkit is not safe to enter from several threads at once
_ready = False


def _exiv2():
    global _ready
    import pyexiv2

    if not _ready:
        pyexiv2.set_log_level(4)  # mute: failures come back as exceptions, which we word ourselves
        _ready = True
    return pyexiv2


def clean_caption(caption: str, name: str) -> str:
    """The caption as it will be stored: control characters (which XML cannot hold) removed,
    ends stripped; an empty or absurdly long caption is refused."""
    if not isinstance(caption, str):
        raise MetadataError(f"{name}: the caption must be text, not {type(caption).__name__}")
    text = "".join(ch for ch in caption if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")).strip()
    if not text:
        raise MetadataError(f"{name}: the caption is empty; nothing was written")
    if len(text) > MAX_CAPTION_CHARS:
        raise MetadataError(f"{name}: the caption is {len(text)} characters long, more than {MAX_CAPTION_CHARS}; "
                            "nothing was written")
    return text


def _iptc_text(text: str) -> str:
    """`text` cut (at a character boundary) to the 2000 bytes IPTC allows."""
    raw = text.encode("utf-8")
    if len(raw) <= IPTC_CAPTION_MAX_BYTES:
        return text
    return raw[:IPTC_CAPTION_MAX_BYTES].decode("utf-8", errors="ignore")


def mime_type(data: bytes, name: str) -> str:
    """Exiv2's MIME type for the image bytes; MetadataError when exiv2 does not know the format."""
    pyexiv2 = _exiv2()
    try:
        with _lock, pyexiv2.ImageData(data) as img:
            return img.get_mime_type()
    except RuntimeError as exc:
        raise MetadataError(f"{name}: not an image file whose metadata can be read ({exc})") from None


def embed_caption(data: bytes, caption: str, name: str) -> bytes:
    """A copy of the image bytes with the caption in XMP, EXIF and (where the format has it) IPTC."""
    text = clean_caption(caption, name)
    if not data:
        raise MetadataError(f"{name}: the file is empty (0 bytes)")
    mime = mime_type(data, name)
    if mime not in WRITABLE:
        kind = _NAMES.get(mime, mime)
        raise MetadataError(f"{name}: captions cannot be embedded in {kind} files (exiv2 cannot write them); "
                            "use --write-metadata sidecar, which writes an .xmp file beside the photo")
    _, with_iptc = WRITABLE[mime]
    pyexiv2 = _exiv2()
    try:
        with _lock, pyexiv2.ImageData(data) as img:
            img.modify_xmp({XMP_DESCRIPTION: {'lang="x-default"': text}})
            img.modify_exif({EXIF_DESCRIPTION: text})
            if with_iptc:
                img.modify_iptc({IPTC_CHARSET: IPTC_UTF8, IPTC_CAPTION: _iptc_text(text)})
            return img.get_bytes()
    except RuntimeError as exc:
        raise MetadataError(f"{name}: the metadata could not be written ({exc}); the file is corrupt or "
                            "truncated, or holds metadata exiv2 cannot parse") from None


def read_embedded(data: bytes, name: str) -> dict:
    """What the image bytes hold: {"xmp", "exif", "iptc"} (None where a field is absent)."""
    pyexiv2 = _exiv2()
    if not data:
        raise MetadataError(f"{name}: the file is empty (0 bytes)")
    try:
        with _lock, pyexiv2.ImageData(data) as img:
            xmp, exif, iptc = _read(img.read_xmp), _read(img.read_exif), _read(img.read_iptc)
    except RuntimeError as exc:
        raise MetadataError(f"{name}: the metadata could not be read ({exc})") from None
    return {"xmp": _lang_alt(xmp.get(XMP_DESCRIPTION)), "exif": exif.get(EXIF_DESCRIPTION) or None,
            "iptc": iptc.get(IPTC_CAPTION) or None}


def _read(method) -> dict:
    try:
        return method()
    except RuntimeError:  # e.g. a format without that kind of metadata
        return {}


def _lang_alt(value) -> str | None:
    """The x-default text of an XMP language alternative (or the first language, or a plain string)."""
    if isinstance(value, dict):
        value = value.get('lang="x-default"', next(iter(value.values()), None))
    return value or None


def sidecar_with_caption(existing: bytes | None, caption: str, name: str) -> bytes:
    """An XMP sidecar's bytes with dc:description set; other properties of `existing` are kept."""
    text = clean_caption(caption, name)
    pyexiv2 = _exiv2()
    try:
        with _lock, pyexiv2.ImageData(existing or EMPTY_XMP) as xmp:
            xmp.modify_xmp({XMP_DESCRIPTION: {'lang="x-default"': text}})
            return xmp.get_bytes()
    except RuntimeError as exc:
        raise MetadataError(f"{name}: not a valid XMP file ({exc}); move it away and write again") from None


def read_sidecar(data: bytes, name: str) -> str | None:
    """dc:description of an XMP sidecar's bytes."""
    pyexiv2 = _exiv2()
    try:
        with _lock, pyexiv2.ImageData(data) as xmp:
            return _lang_alt(xmp.read_xmp().get(XMP_DESCRIPTION))
    except RuntimeError as exc:
        raise MetadataError(f"{name}: not a valid XMP file ({exc})") from None
