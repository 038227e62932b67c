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
