"""Alt-text export: one ``<img src alt>`` line per gallery photo, for pasting into a web page.

``src`` is the photo's path relative to the folder of the HTML file written (so the file shows the
photos when opened where it was written; written inside the gallery folder it is the gallery's own
``images/..`` path), URL-quoted; ``alt`` is the saved caption, HTML-escaped. Items in the trash
are left out.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from captioner.atomic_write import AtomicFile
from captioner.metadata.errors import MetadataError

if TYPE_CHECKING:
    from captioner.storage import Gallery


def html_alt_snippet(src: str, alt: str, width: int | None = None, height: int | None = None) -> str:
    """``<img src="..." alt="..." width=".." height="..">`` with `alt` HTML-escaped (quotes too)."""
    alt = " ".join(str(alt or "").split())
    size = f' width="{int(width)}" height="{int(height)}"' if width and height else ""
    return f'<img src="{html.escape(quote(src, safe="/"), quote=True)}" alt="{html.escape(alt, quote=True)}"{size}>'


def write_html_alt(gallery: Gallery, path: str | os.PathLike) -> tuple[Path, int]:
    """Write every live photo of `gallery` as one ``<img>`` line into `path` (atomically, UTF-8);
    return the path and the number of lines."""
    from captioner.storage.errors import GalleryError
    from captioner.storage.targets import check_target

    try:
        path = check_target(path, "alt-text.html")  # a new name or a regular file: never a link, FIFO or device
    except GalleryError as exc:
        raise MetadataError(str(exc)) from None
    folder = path.absolute().parent
    count = 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with AtomicFile(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write('<!-- photos with their captions as alt text (captioner gallery export --format html-alt) -->\n')
            for item in gallery.iter_items():
                if item.get("deleted_at"):
                    continue
                src = Path(os.path.relpath(Path(item["image_path"]).absolute(), folder)).as_posix()
                fh.write(html_alt_snippet(src, item.get("caption") or "", item.get("width"), item.get("height")))
                fh.write("\n")
                count += 1
    except OSError as exc:
        raise MetadataError(f"Could not write the alt-text file '{path}': {exc.strerror or exc}") from None
    return path, count
