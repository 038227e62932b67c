"""What the video modules share and what is cheap to import (the CLI sorts inputs with it)."""
from __future__ import annotations

import os
from pathlib import Path

from captioner.errors import ImageError

#: files taken for videos by their name; `.gif` only when animated (a still GIF stays a photo)
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"}


class VideoError(ImageError):
    """A video could not be read (missing, corrupt, truncated, not a video, no picture)."""


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether a path is to be captioned as a video: a video extension, and for `.gif` more than
    one frame (a still GIF is a photo, as before). Whether it really is a video is found out
    when it is opened (`decode.open_video`)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        return False
    if suffix != ".gif":
        return True
    try:
        from PIL import Image

        with Image.open(path) as img:
            return bool(getattr(img, "is_animated", False))
    except Exception:  # unreadable: the photo path reports it as it always did
        return False
