"""The common in-memory form every reader produces."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from captioner.errors import DataError


@dataclass
class CaptionDataset:
    """Image files with their reference captions, and the split each belongs to."""

    image_dir: Path
    captions: dict[str, list[str]]  # image id (file name) -> reference captions
    splits: dict[str, list[str]] = field(default_factory=dict)  # "train"/"val"/"test" -> image ids

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / image_id

    def split(self, name: str) -> list[str]:
        if name not in self.splits:
            raise DataError(f"no split {name!r}; this dataset has {', '.join(self.splits)}")
        return self.splits[name]

    @property
    def all_images(self) -> list[str]:
        """Every image in any split, sorted (the feature cache's order)."""
        return sorted({i for ids in self.splits.values() for i in ids})


def load_dataset(path: str | Path, image_dir: str | Path | None = None) -> CaptionDataset:
    """Flickr8k folder (token file + split lists) or a Karpathy-format JSON file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder")
    if path.is_dir() and (path / "Flickr8k.token.txt").exists():
        from captioner.data.flickr8k import read_flickr8k

        return _reading(path, read_flickr8k, path)
    if path.is_file() and path.suffix == ".json":
        from captioner.data.karpathy import read_karpathy

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
