"""Captions without torch: a model folder's ONNX runtime (`encoder.onnx`, `decoder_step.onnx`) with numpy
preprocessing and numpy beam search (`captioner.runtime.numpy_search`), for plain decoding only (no
grounding, support penalty, sentence bank, tags or confidence yet: `captioner.pipeline.Captioner` does
those). It shows what start-up costs once torch is not imported (benchmarks/bench_startup.py).

    from captioner.runtime.lean import LeanCaptioner
    LeanCaptioner().caption("dog.jpg", tag_bonus=0, support_penalty=0, bank_shortlist=0)

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from captioner.errors import ModelLoadError
from captioner.runtime.checksums import mismatches, read_checksums
from captioner.runtime.folder_runtime import ENCODER_FILE, STEP_FILE
from captioner.runtime.numpy_search import NumpyStepDecoder, decode, supported


def model_dir(folder: str | os.PathLike | None = None) -> Path:
    """`folder`, else $CAPTIONER_MODEL, else the shipped model (as `captioner.model.folder.default_model_dir`)."""
    return Path(folder or os.environ.get("CAPTIONER_MODEL") or str(resources.files("captioner.weights")))


def to_array(img, mean, std) -> np.ndarray:
    """`captioner.inputs.images.to_tensor` in numpy: the same float32 operations in the same order."""
    arr = np.array(img, dtype=np.uint8, copy=True).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return (arr - m) / s


class LeanCaptioner:
    def __init__(self, folder: str | os.PathLike | None = None, threads: int = 0):
        from captioner.model.config import load_configs
        from captioner.model.vocab import Vocab
        from captioner.runtime.ort_session import session

        self.folder = model_dir(folder)
        listed = read_checksums(self.folder)
        entry = (listed or {}).get("runtime", {}).get(ENCODER_FILE)
        if not entry:
            raise ModelLoadError(f"{self.folder} carries no ONNX runtime (scripts/ship_model.py --runtime-only)")
        bad = mismatches(self.folder, [ENCODER_FILE, STEP_FILE, "decoder.safetensors"], listed["files"])
        if bad:
            raise ModelLoadError(f"{self.folder}: {', '.join(bad)} differ from checksums.json")
        self.cfg, self.decoding = load_configs(self.folder)
        self.vocab = Vocab.load(self.folder / "vocab.json")
        self.mean, self.std = entry["mean"], entry["std"]
        self.encoder = session(self.folder / ENCODER_FILE, threads)
        self.decoder = NumpyStepDecoder(self.folder, threads)

    def encode(self, images: list) -> np.ndarray:
        from captioner.inputs.images import open_image, resize_square

        size = self.cfg.input_size
        batch = np.stack([to_array(resize_square(open_image(p, draft_size=size), size), self.mean, self.std)
                          for p in images])
        return self.encoder.run(["features"], {"image": batch})[0]

    def caption(self, image, **changes) -> list:
        """Candidates for one photo (a path), best first, decoded with the model's decoding and `changes`
        (plain decoding only: see `captioner.runtime.numpy_search.supported`)."""
        cfg = self.decoding.replace(**changes)
        if not supported(cfg):
            raise ValueError("grounded decoding, the support penalty and the sentence bank need the PyTorch path "
                             "(tag_bonus=0, support_penalty=0, bank_shortlist=0 here)")
        return decode(self.decoder, self.encode([image]), self.vocab, cfg)[0]
