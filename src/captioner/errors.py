"""Error types that speak to a user: what went wrong and what to do."""


class CaptionerError(Exception):
    """Base class for every error the captioner reports to a user."""


class ImageError(CaptionerError):
    """An input image could not be read (missing, corrupt, unsupported or too large)."""


class ModelLoadError(CaptionerError):
    """A model folder, checkpoint or vocabulary is missing, corrupt or inconsistent."""


class WeightsNotFoundError(CaptionerError):
    """Pretrained backbone weights are not on this machine."""


class ConfigError(CaptionerError):
    """A setting (a command-line flag, config.json, decoding.json) is of the wrong type or out of range."""


class DataError(CaptionerError):
    """A dataset (--data, --image-dir) is missing, unreadable or not in a known format."""
