"""Gallery storage for captioned images (SQLite + image folder, no GUI code)."""

from .gallery import Gallery, GalleryError, Page, default_gallery_dir

__all__ = ["Gallery", "GalleryError", "Page", "default_gallery_dir"]
