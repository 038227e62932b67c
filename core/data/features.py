"""Feature cache: encoder features computed once per image, stored as float16, resumable.

Layout of a cache folder: `features.npy` (a memory-mapped array (n_images, N*N, C) float16),
`index.json` (image ids in row order, backbone, input size, grid) and `progress.json`
(how many rows are done). An interrupted run continues where it stopped.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import CaptionerError
from ..images import load_for_model


class FeatureCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "index.json").is_file() or not (self.folder / "features.npy").is_file():
            raise CaptionerError(f"{self.folder} is not a feature cache (no index.json/features.npy): make it with "
                                 f"`captioner prepare --data DATA --cache {self.folder}`")
        meta = json.loads((self.folder / "index.json").read_text())
        self.meta = meta
        self.ids: list[str] = meta["ids"]
        self.row = {i: n for n, i in enumerate(self.ids)}
        shape = (len(self.ids), meta["grid"] * meta["grid"], meta["channels"])
        self.array = np.load(self.folder / "features.npy", mmap_mode="r")
        assert self.array.shape == shape, f"feature cache {self.folder} is inconsistent"

    @property
    def complete(self) -> bool:
        return _done(self.folder) >= len(self.ids)

    def load(self, ids: list[str]) -> torch.Tensor:
        """Features for these images as one float16 tensor (n, N*N, C), read into memory."""
        rows = np.array([self.row[i] for i in ids])
        order = np.argsort(rows)
        out = np.empty((len(ids),) + self.array.shape[1:], dtype=np.float16)
        out[order] = self.array[rows[order]]
        return torch.from_numpy(out)


def _done(folder: Path) -> int:
    p = folder / "progress.json"
    return json.loads(p.read_text())["done"] if p.exists() else 0


def build_feature_cache(encoder, dataset, folder: str | Path, input_size: int, batch_size: int = 32,
                        workers: int = 2, ids: list[str] | None = None) -> FeatureCache:
    """Encode every image of `dataset` (or `ids`) into `folder`, resuming an earlier run."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids if ids is not None else dataset.all_images
    grid, channels = encoder.grid, encoder.channels
    meta = {"ids": ids, "backbone": encoder.spec.name, "input_size": input_size, "grid": grid, "channels": channels}
    index = folder / "index.json"
    if index.exists():
        old = json.loads(index.read_text())
        if old != meta:
            raise ValueError(f"{folder} holds a different feature cache ({old['backbone']}, {old['input_size']}px, "
                             f"{old['grid']}x{old['grid']}); choose another --cache folder")
        arr = np.load(folder / "features.npy", mmap_mode="r+")
    else:
        arr = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float16,
                                        shape=(len(ids), grid * grid, channels))
        index.write_text(json.dumps(meta))
    start = _done(folder)
    mean, std = encoder.spec.mean, encoder.spec.std
    encoder.eval()

    def load(i: str) -> torch.Tensor:
        return load_for_model(dataset.image_path(i), input_size, mean, std)

    with ThreadPoolExecutor(workers) as pool, torch.inference_mode():
        bar = tqdm(total=len(ids), initial=start, desc="encoding images", unit="img")
        batches = [ids[s : s + batch_size] for s in range(start - start % batch_size, len(ids), batch_size)]
        pending = pool.map(lambda b: torch.stack([load(i) for i in b]), batches)
        pos = start - start % batch_size
        for batch_ids, images in zip(batches, pending):
            feats = encoder(images.contiguous(memory_format=torch.channels_last))
            arr[pos : pos + len(batch_ids)] = feats.reshape(len(batch_ids), grid * grid, channels).numpy().astype(np.float16)
            pos += len(batch_ids)
            if pos // batch_size % 10 == 0 or pos == len(ids):
                arr.flush()
                (folder / "progress.json").write_text(json.dumps({"done": pos}))
            bar.update(len(batch_ids))
        bar.close()
    arr.flush()
    (folder / "progress.json").write_text(json.dumps({"done": len(ids)}))
    del arr
    return FeatureCache(folder)
