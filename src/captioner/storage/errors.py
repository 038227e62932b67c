"""The one error type of the storage package."""
from captioner.errors import CaptionerError


class GalleryError(CaptionerError):
    """A problem the user can act on: bad input, missing item, unreadable gallery."""


class DuplicateItemError(GalleryError):
    """The same photo (same bytes) with the same caption is already in the gallery."""

    def __init__(self, message: str, item_id: int):
        super().__init__(message)
        self.item_id = item_id
