"""Feature cache: encoder features computed once per image, stored as float16, resumable.

Layout of a cache folder: `features.npy` (a memory-mapped array (n_images, N*N, C) float16),
`index.json` (image ids in row order, backbone, input size, grid) and `progress.json`
(how many rows are done). An interrupted run continues where it stopped.

Two kinds besides the plain one (the pretrained backbone's output), marked in `index.json`:
- `before_blocks: n`: the trunk's output before its last n blocks, for fine-tuning those blocks
  (`captioner prepare --before-blocks n`); only `captioner train --fine-tune-blocks n` uses it.
- `encoder: <fingerprint>`: the output of a fine-tuned encoder (`captioner prepare --model DIR`),
  usable only with models whose encoder has that fingerprint.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from captioner.errors import CaptionerError
from captioner.inputs.images import load_for_model


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


def _encoding(encoder, input_size: int, before_blocks: int, fine_tuned: bool):
    """(encode(images) -> (B, N, N, C), grid, channels, extra meta) for one kind of cache."""
    encoder.eval()
    if before_blocks:
        with torch.inference_mode():
            probe = encoder.prefix(torch.zeros(1, 3, input_size, input_size), before_blocks)
        _, channels, h, w = probe.shape
        if h != w:
            raise CaptionerError(f"the trunk's map before its last {before_blocks} blocks is {h}x{w}, not square")
        return (lambda images: encoder.prefix(images, before_blocks).permute(0, 2, 3, 1)), h, channels, \
            {"before_blocks": before_blocks}
    extra = {"encoder": encoder.fingerprint()} if fine_tuned else {}
    return encoder, encoder.grid, encoder.channels, extra


def build_feature_cache(encoder, dataset, folder: str | Path, input_size: int, batch_size: int = 32,
                        workers: int = 2, ids: list[str] | None = None, before_blocks: int = 0,
                        fine_tuned: bool = False) -> FeatureCache:
    """Encode every image of `dataset` (or `ids`) into `folder`, resuming an earlier run.

    `before_blocks` > 0 stores the trunk's output before its last blocks (see the module doc);
    `fine_tuned` marks the cache with the encoder's fingerprint."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids if ids is not None else dataset.all_images
    encode, grid, channels, extra = _encoding(encoder, input_size, before_blocks, fine_tuned)
    meta = {"ids": ids, "backbone": encoder.spec.name, "input_size": input_size, "grid": grid, "channels": channels,
            **extra}
    index = folder / "index.json"
    if index.exists():
        old = json.loads(index.read_text())
        if old != meta:
            raise CaptionerError(f"{folder} holds a different feature cache ({old['backbone']}, {old['input_size']}px, "
                                 f"{old['grid']}x{old['grid']}, {old['channels']} channels); choose another --cache folder")
        arr = np.load(folder / "features.npy", mmap_mode="r+")
    else:
        arr = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float16,
                                        shape=(len(ids), grid * grid, channels))
        index.write_text(json.dumps(meta))
    start = _done(folder)
    mean, std = encoder.spec.mean, encoder.spec.std

    def load(i: str) -> torch.Tensor:
        return load_for_model(dataset.image_path(i), input_size, mean, std)

    with ThreadPoolExecutor(workers) as pool, torch.inference_mode():
        bar = tqdm(total=len(ids), initial=start, desc="encoding images", unit="img")
        batches = [ids[s : s + batch_size] for s in range(start - start % batch_size, len(ids), batch_size)]
        pending = pool.map(lambda b: torch.stack([load(i) for i in b]), batches)
        pos = start - start % batch_size
        for batch_ids, images in zip(batches, pending):
            feats = encode(images.contiguous(memory_format=torch.channels_last))
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


def finish_feature_cache(encoder, partial: FeatureCache, folder: str | Path, batch_size: int = 64) -> FeatureCache:
    """Run a (fine-tuned) encoder's last blocks over a `before_blocks` cache: a plain cache of its
    output, marked with its fingerprint. Much faster than encoding the images again."""
    n = partial.meta.get("before_blocks", 0)
    if n != encoder.fine_tune_blocks or n == 0:
        raise CaptionerError(f"{partial.folder} holds the trunk before its last {n} blocks, but the model "
                             f"fine-tuned {encoder.fine_tune_blocks}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g, ids = encoder.grid, partial.ids
    meta = {"ids": ids, "backbone": encoder.spec.name, "input_size": partial.meta["input_size"], "grid": g,
            "channels": encoder.channels, "encoder": encoder.fingerprint()}
    arr = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float16,
                                    shape=(len(ids), g * g, encoder.channels))
    (folder / "index.json").write_text(json.dumps(meta))
    (folder / "progress.json").write_text(json.dumps({"done": 0}))
    encoder.eval()
    side = partial.meta["grid"]
    with torch.inference_mode():
        for s in tqdm(range(0, len(ids), batch_size), desc="finishing features", unit="batch"):
            x = torch.from_numpy(np.asarray(partial.array[s : s + batch_size], dtype=np.float32))
            x = x.reshape(len(x), side, side, -1).permute(0, 3, 1, 2)
            arr[s : s + len(x)] = encoder.suffix(x).reshape(len(x), g * g, -1).numpy().astype(np.float16)
    arr.flush()
    (folder / "progress.json").write_text(json.dumps({"done": len(ids)}))
    del arr
    return FeatureCache(folder)


def open_feature_cache(path, backbone: str, input_size: int, grid: int | None, fix: str, before_blocks: int = 0,
                        encoder: str | None = None):
    """A complete feature cache made for this backbone, input size and grid (None: any), or a clear error.

    `before_blocks`: the cache must hold the trunk before its last that many blocks;
    `encoder`: it must come from the fine-tuned encoder with this fingerprint (None: the pretrained one)."""
    cache = FeatureCache(path)
    if not cache.complete:
        raise CaptionerError(f"the feature cache {path} is incomplete: run `captioner prepare` again to finish it")
    m = cache.meta
    if (m["backbone"], m["input_size"]) != (backbone, input_size) or grid is not None and m["grid"] != grid:
        raise CaptionerError(f"the feature cache was made with {m['backbone']} at {m['input_size']}px, "
                             f"grid {m['grid']}; {fix}")
    if m.get("before_blocks", 0) != before_blocks:
        have = f"the trunk before its last {m['before_blocks']} blocks" if m.get("before_blocks") else "whole-trunk features"
        want = (f"the trunk before its last {before_blocks} blocks (`captioner prepare --before-blocks {before_blocks}`)"
                if before_blocks else "whole-trunk features")
        raise CaptionerError(f"the feature cache {path} holds {have}, but this needs {want}")
    if not before_blocks and m.get("encoder") != encoder:
        raise CaptionerError(
            f"the feature cache {path} was made with a different encoder than this model's"
            + ("; make one with `captioner prepare --model MODEL_DIR --cache NEW_DIR`" if encoder else
               "; use a cache made with `captioner prepare --backbone ...`"))
    return cache
