"""The one error the metadata package raises: a sentence that names the file and what to do."""
from __future__ import annotations

from captioner.errors import CaptionerError


class MetadataError(CaptionerError):
    """A caption could not be written into (or read from) a photo's metadata."""
