"""Captions without torch: a model folder's ONNX runtime (`encoder.onnx`, `decoder_step.onnx`) with numpy
preprocessing, the numpy tagger, and numpy beam search with the model's whole decoding: grounding, tag
reliability, the support penalty, new words (`captioner.runtime.numpy_search`, `numpy_grounding`,
`numpy_support`, `numpy_new_words`). Not here yet: the sentence bank (refused when a decoding turns it on),
the calibrated confidence and the warnings of `captioner.pipeline.Captioner`, which does all of these.

    from captioner.runtime.lean import LeanCaptioner
    candidates, tags = LeanCaptioner().caption("dog.jpg")

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from captioner.errors import ModelLoadError
from captioner.runtime.checksums import mismatches, read_checksums
from captioner.runtime.folder_runtime import ENCODER_FILE, STEP_FILE
from captioner.runtime.numpy_search import NumpyStepDecoder


def model_dir(folder: str | os.PathLike | None = None) -> Path:
    """`folder`, else $CAPTIONER_MODEL, else the shipped model (as `captioner.model.folder.default_model_dir`)."""
    return Path(folder or os.environ.get("CAPTIONER_MODEL") or str(resources.files("captioner.weights")))


def to_array(img, mean, std) -> np.ndarray:
    """`captioner.inputs.images.to_tensor` in numpy: the same float32 operations in the same order."""
    arr = np.array(img, dtype=np.uint8, copy=True).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return (arr - m) / s


class Reliability:
    """`captioner.tags.reliability.TagReliability.share` from the folder's `tag_reliability.json`."""

    def __init__(self, data: dict):
        self.counts = {str(w): (int(c[0]), int(c[1])) for w, c in data["words"].items()}
        self.prior, self.strength = float(data.get("prior", 0.5)), float(data.get("strength", 5.0))

    @classmethod
    def load(cls, folder: Path) -> Reliability | None:
        try:
            return cls(json.loads((folder / "tag_reliability.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def share(self, word: str) -> float:
        seen, named = self.counts.get(word, (0, 0))
        return (named + self.strength * self.prior) / (seen + self.strength)


class LeanCaptioner:
    def __init__(self, folder: str | os.PathLike | None = None, threads: int = 0):
        from captioner.model.config import load_configs
        from captioner.model.vocab import Vocab
        from captioner.runtime.numpy_new_words import load_new_words
        from captioner.runtime.numpy_support import NumpySupport
        from captioner.runtime.numpy_tagger import NumpyTagger
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
        self.tagger = NumpyTagger.for_backbone(self.cfg.backbone)
        self.support = NumpySupport.load(self.folder, self.tagger.labels if self.tagger else None)
        self.reliability = Reliability.load(self.folder)
        self.new_words = load_new_words(self.folder)

    def encode(self, images: list) -> np.ndarray:
        from captioner.inputs.images import open_image, resize_square

        size = self.cfg.input_size
        batch = np.stack([to_array(resize_square(open_image(p, draft_size=size), size), self.mean, self.std)
                          for p in images])
        return self.encoder.run(["features"], {"image": batch})[0]

    def caption(self, image, **changes) -> tuple[list, list]:
        """(candidates best first, tags) for one photo (a path), decoded with the model's decoding and
        `changes` (field changes, e.g. beam_size=3)."""
        from captioner.runtime.numpy_grounding import decode_with_tags

        cfg = self.decoding.replace(**changes)
        grids = self.encode([image])
        word_probs = self.tagger.word_probabilities(grids) if self.tagger is not None else None
        tags = self.tagger.tags(grids) if self.tagger is not None else [[]]
        cands = decode_with_tags(self.tagger, self.decoder, grids, self.vocab, cfg, word_probs, self.reliability,
                                 self.support, self.new_words)
        return cands[0], tags[0]
