"""The one error type of the storage package."""


class GalleryError(Exception):
    """A problem the user can act on: bad input, missing item, unreadable gallery."""
