"""Captions without torch: a model folder's ONNX runtime (`encoder.onnx`, `decoder_step.onnx`) with numpy
preprocessing, the numpy tagger, and numpy beam search with the model's whole decoding: grounding, tag
reliability, the support penalty, new words (`captioner.runtime.numpy_search`, `numpy_grounding`,
`numpy_support`, `numpy_new_words`), then the calibrated confidence and the warnings as
`captioner.pipeline.Captioner.caption_prepared` gives them. Not here yet: the sentence bank (refused when a
decoding turns it on), video, batches.

    from captioner.runtime.lean import LeanCaptioner
    result = LeanCaptioner().caption("dog.jpg")   # .caption, .candidates, .tags, .confidence, .warnings

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
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


def read_configs(folder: Path, encoder_entry: dict):
    """The folder's `ModelConfig` and `DecodingConfig`. `captioner.model.config.load_configs` checks the backbone
    against the backbone registry, which imports torch; here the backbone, grid and input size must be those
    the folder's encoder.onnx was written for (checked then), and decoding.json is required (a folder
    with an ONNX runtime is written by this version)."""
    from captioner.decoding.config import DecodingConfig
    from captioner.model.config import ModelConfig

    try:
        cfg = ModelConfig(**json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{folder}: cannot read config.json ({exc})") from None
    made_for = {k: encoder_entry.get(k) for k in ("backbone", "grid", "input_size", "fine_tune_blocks")}
    if {k: getattr(cfg, k) for k in made_for} != made_for:
        raise ModelLoadError(f"{folder}: config.json does not match the encoder.onnx beside it ({made_for})")
    return cfg, DecodingConfig.load(folder / "decoding.json")


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


@dataclass
class LeanResult:
    """What `captioner.pipeline.CaptionResult` holds for one photo (what the confidence scorer reads)."""

    image: str
    candidates: list
    tags: list
    warnings: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    confidence: float | None = None

    @property
    def caption(self) -> str | None:
        return self.candidates[0].caption if self.candidates else None


class LeanCaptioner:
    def __init__(self, folder: str | os.PathLike | None = None, threads: int = 0):
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
        self.cfg, self.decoding = read_configs(self.folder, entry)
        self.vocab = Vocab.load(self.folder / "vocab.json")
        self.mean, self.std = entry["mean"], entry["std"]
        self.encoder = session(self.folder / ENCODER_FILE, threads)
        self.decoder = NumpyStepDecoder(self.folder, threads)
        self.tagger = NumpyTagger.for_backbone(self.cfg.backbone)
        self.support = NumpySupport.load(self.folder, self.tagger.labels if self.tagger else None)
        self.reliability = Reliability.load(self.folder)
        self.new_words = load_new_words(self.folder)
        from captioner.confidence.calibration import ConfidenceScorer

        self.scorer = ConfidenceScorer.load(self.folder)

    def caption(self, image, **changes) -> LeanResult:
        """One photo (a path), decoded with the model's decoding and `changes` (field changes, e.g. beam_size=3)."""
        from captioner.confidence.checks import image_warnings, tag_warnings
        from captioner.inputs.images import open_image, original_size, resize_square
        from captioner.runtime.numpy_grounding import decode_with_tags

        cfg = self.decoding.replace(**changes)
        size = self.cfg.input_size
        img = open_image(image, draft_size=size)
        width_height = original_size(img)
        warned = image_warnings(img, width_height)
        batch = to_array(resize_square(img, size), self.mean, self.std)[None]
        grids = self.encoder.run(["features"], {"image": batch})[0]
        word_probs = self.tagger.word_probabilities(grids) if self.tagger is not None else None
        tags = self.tagger.tags(grids)[0] if self.tagger is not None else []
        cands = decode_with_tags(self.tagger, self.decoder, grids, self.vocab, cfg, word_probs, self.reliability,
                                 self.support, self.new_words)[0]
        result = LeanResult(str(image), cands, tags, list(warned) + tag_warnings(tags, warned), *width_height)
        if self.scorer is not None:
            presence = None
            if self.support is not None:
                presence = dict(zip(self.support.names, self.support.presence(grids, word_probs)[0].tolist()))
            self.scorer.score(result, presence)
        return result
