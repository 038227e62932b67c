"""`load_dataset`: which reader a --data path needs (a Flickr8k folder or a Karpathy JSON), its errors as one line."""
from __future__ import annotations

from pathlib import Path

from captioner.data.dataset import CaptionDataset
from captioner.data.flickr8k import read_flickr8k
from captioner.data.karpathy import read_karpathy
from captioner.errors import DataError


def load_dataset(path: str | Path, image_dir: str | Path | None = None) -> CaptionDataset:
    """Flickr8k folder (token file + split lists) or a Karpathy-format JSON file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder")
    if path.is_dir() and (path / "Flickr8k.token.txt").exists():
        return _reading(path, read_flickr8k, path)
    if path.is_file() and path.suffix == ".json":
        if image_dir is None:
            raise DataError("a Karpathy JSON needs --image-dir: the folder its 'filepath/filename' entries are under")
        if not Path(image_dir).is_dir():
            raise DataError(f"--image-dir {image_dir}: not a folder")
        return _reading(path, read_karpathy, path, image_dir)
    raise DataError(f"--data {path}: expected a Flickr8k folder (with Flickr8k.token.txt) or a Karpathy dataset_*.json")


def _reading(path: Path, reader, *args) -> CaptionDataset:
    """Run a reader; a file it cannot parse becomes one clear `DataError`."""
    try:
        ds = reader(*args)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--data {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"--data {path}: not in the expected format ({type(exc).__name__}: {exc})") from None
    if not any(ds.splits.values()):
        raise DataError(f"--data {path}: holds no captioned images")
    return ds
