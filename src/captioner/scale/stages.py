"""The two stages of a Ray captioning job, each working on one shard (a fixed list of photos that
becomes one output file):

- `decode_shard` (Ray tasks on CPU workers): open, EXIF-rotate, convert and resize every photo as
  `Captioner.prepare` does; a photo that cannot be read keeps its one-line error.
- `CaptionWorker` (an actor pool; one model load per actor, on a GPU when it has one): normalise,
  encode, beam search, and write the shard's rows to its own file (`results_store.write_shard`).

Rows cross between them as plain Arrow-friendly values: names, errors, sizes and the resized photos as
one byte string of uint8 pixels.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from captioner.errors import CaptionerError

#: model folder files a worker needs (no model card, no pictures)
MODEL_FILE_SUFFIXES = (".json", ".safetensors")


def model_files(model_dir: str | Path) -> dict[str, bytes]:
    """The model folder's files, to ship to workers that may not share this machine's disk."""
    folder = Path(model_dir)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES}


def _prepare(name: str, size: int, cwd: str = ""):
    """(resized uint8 HxWx3 pixels, (width, height)) for one photo, or raises `CaptionerError`: the
    same steps and messages as `Captioner.prepare`, without the model. A relative local name is read
    from the driver's folder `cwd` (a worker's own may differ) and still named as given."""
    from captioner.inputs.images import open_image, original_size, resize_square
    from captioner.scale.sources import is_uri, read_remote
    from captioner.video.types import is_video_path

    if is_video_path(name):
        raise CaptionerError(f"{name}: a video; --ray captions photos (caption videos without --ray: "
                             f"captioner caption {name})")
    if is_uri(name):
        try:
            img = open_image(read_remote(name), draft_size=size)
        except CaptionerError as exc:
            raise CaptionerError(str(exc).replace("the uploaded image", name, 1)) from None
    elif cwd and not os.path.isabs(name):
        full = os.path.join(cwd, name)
        try:
            img = open_image(full, draft_size=size)
        except CaptionerError as exc:
            raise CaptionerError(str(exc).replace(full, name)) from None
    else:
        img = open_image(name, draft_size=size)
    return np.asarray(resize_square(img, size), dtype=np.uint8), original_size(img)


def decode_shard(row: dict, input_size: int, cwd: str = "") -> dict:
    """One shard's photos decoded and resized (errors captured per photo, never raised)."""
    names = [str(n) for n in row["paths"]]
    errors, widths, heights, pixels = [], [], [], []
    for name in names:
        try:
            arr, (w, h) = _prepare(name, input_size, cwd)
            pixels.append(arr.tobytes())
            errors.append("")
            widths.append(int(w))
            heights.append(int(h))
        except CaptionerError as exc:
            errors.append(str(exc) or f"{name}: could not be read")
            widths.append(0)
            heights.append(0)
        except Exception as exc:  # never let one odd file stop a shard
            errors.append(f"{name}: could not be read ({type(exc).__name__}: {exc})")
            widths.append(0)
            heights.append(0)
    return {"shard": int(row["shard"]), "names": names, "errors": errors, "widths": widths, "heights": heights,
            "previous_errors": [str(e) for e in row["previous_errors"]], "pixels": b"".join(pixels),
            "input_size": input_size}


class CaptionWorker:
    """A Ray actor: loads the model once, then captions shard after shard and writes each one's file."""

    def __init__(self, files, decoding, out_dir: str, run_id: str, fmt: str, batch_size: int,
                 threads: int, device: str):
        """`files`: the model folder's files (`model_files`), or a one-item list holding their Ray object ref."""
        import torch

        if isinstance(files, list):
            import ray

            files = ray.get(files[0])

        from captioner.pipeline import Captioner

        torch.set_num_threads(max(1, threads))  # before the ONNX Runtime sessions are made (they take it)
        self._model_dir = tempfile.mkdtemp(prefix="captioner-ray-model-")
        for name, data in files.items():
            Path(self._model_dir, name).write_bytes(data)
        self.captioner = Captioner.load(self._model_dir, device=device)
        self.decoding, self.out_dir, self.run_id, self.fmt = decoding, out_dir, run_id, fmt
        self.batch_size = batch_size
        self.pid = os.getpid()

    def __call__(self, row: dict) -> dict:
        from captioner.scale.results_store import write_shard

        results = self.caption(row)
        previous = dict(zip(row["names"], row["previous_errors"]))
        # a photo that failed before and fails again the same way keeps its earlier row (a re-run adds nothing)
        records = [r.to_dict() for r in results if not (r.error and previous.get(r.image) == r.error)]
        path = write_shard(self.out_dir, self.run_id, int(row["shard"]), records, self.fmt) if records else ""
        return {"shard": int(row["shard"]), "photos": len(results), "failed": sum(r.error is not None for r in results),
                "written": len(records), "file": path, "worker": self.pid,
                "errors": [r.error for r in results if r.error]}

    def caption(self, row: dict) -> list:
        """`CaptionResult`s for a decoded shard, in its order, in batches of `batch_size`."""
        import torch

        from captioner.inputs.images import to_tensor
        from captioner.inputs.prepare import Prepared

        size = int(row["input_size"])
        per_photo = size * size * 3
        pixels = np.frombuffer(row["pixels"], dtype=np.uint8)
        model = self.captioner.model
        prepared, offset = [], 0
        for name, error, w, h in zip(row["names"], row["errors"], row["widths"], row["heights"]):
            if error:
                prepared.append(Prepared(str(name), error=str(error)))
                continue
            arr = pixels[offset : offset + per_photo].reshape(size, size, 3)
            offset += per_photo
            tensor = to_tensor(Image.fromarray(arr, "RGB"), model.mean, model.std)
            prepared.append(Prepared(str(name), tensor, (int(w), int(h))))
        results = []
        with torch.inference_mode():
            for s in range(0, len(prepared), self.batch_size):
                results.extend(self.captioner.caption_prepared(prepared[s : s + self.batch_size], self.decoding))
        return results

