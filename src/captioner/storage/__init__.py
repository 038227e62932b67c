"""Gallery storage for captioned images (SQLite + image folder, no GUI code).

``gallery`` holds the Gallery class, ``schema`` the one description of its table,
``migrations`` the schema versions.  Gallery loads sqlite-utils, so it is imported on
first use: ``from captioner.storage.errors import GalleryError`` stays cheap.
"""

from .errors import DuplicateItemError, GalleryError

__all__ = ["DuplicateItemError", "Gallery", "GalleryError", "Page", "default_gallery_dir"]


def __getattr__(name: str):
    if name in ("Gallery", "Page", "default_gallery_dir"):
        from . import gallery

        return getattr(gallery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
