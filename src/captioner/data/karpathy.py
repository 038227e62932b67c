"""Reader for Karpathy-format JSON (dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json)."""
from __future__ import annotations

import json
from pathlib import Path

from captioner.data.dataset import CaptionDataset


def read_karpathy(json_path: str | Path, image_dir: str | Path, restval_to_train: bool = True) -> CaptionDataset:
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    captions, splits = {}, {"train": [], "val": [], "test": []}
    for img in data["images"]:
        image_id = f"{img['filepath']}/{img['filename']}" if img.get("filepath") else img["filename"]
        refs = [s.get("raw") or " ".join(s["tokens"]) for s in img["sentences"]]
        captions[image_id] = refs
        split = img.get("split", "train")
        if split == "restval":
            if not restval_to_train:
                continue
            split = "train"
        splits.setdefault(split, []).append(image_id)
    return CaptionDataset(Path(image_dir), captions, splits)
