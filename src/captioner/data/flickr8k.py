"""Reader for Flickr8k as laid out in shared/data/flickr8k (token file + official split lists)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from captioner.data.dataset import CaptionDataset

SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}


def read_flickr8k(root: str | Path) -> CaptionDataset:
    root = Path(root)
    image_dir = root / "images" if (root / "images").is_dir() else root / "Flicker8k_Dataset"
    captions: dict[str, list[str]] = defaultdict(list)
    for line in (root / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        if "\t" not in line:
            continue
        key, caption = line.split("\t", 1)
        image_id = key.rsplit("#", 1)[0]
        if not image_id.endswith(".jpg"):  # e.g. '2258277193_586949ec62.jpg.1' names no image
            continue
        captions[image_id].append(caption.strip())
    splits = {}
    for split, fn in SPLIT_FILES.items():
        ids = [line.strip() for line in (root / fn).read_text().splitlines() if line.strip()]
        splits[split] = [i for i in ids if i in captions]
    return CaptionDataset(image_dir, dict(captions), splits)
