"""Captions without torch: a model folder's ONNX runtime (`encoder.onnx`, `decoder_step.onnx`) with numpy
preprocessing, the numpy tagger, and numpy beam search with the model's whole decoding: grounding, tag
reliability, the support penalty, new words (`captioner.runtime.numpy_search`, `numpy_grounding`,
`numpy_support`, `numpy_new_words`), the careful caption and the language-model prior (`captioner.decoding.stages`,
shared with the PyTorch path), the sentence bank (`captioner.bank.runtime` on numpy arrays, with the numpy
likelihood scorer), then the calibrated confidence and the warnings as
`captioner.pipeline.Captioner.caption_prepared` gives them, one photo or batches of them, and videos
(`caption_video`, `captioner.video.segments`).

    from captioner.runtime.lean import LeanCaptioner
    result = LeanCaptioner().caption("dog.jpg")   # .caption, .candidates, .tags, .confidence, .warnings
    video = LeanCaptioner().caption_video("trip.mp4")   # a VideoResult: .segments (start, end, caption)

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from captioner.errors import ModelLoadError
from captioner.result import CaptionResult
from captioner.runtime.checksums import mismatches, read_checksums
from captioner.runtime.folder_runtime import ENCODER_FILE, STEP_FILE
from captioner.runtime.numpy_search import NumpyStepDecoder

if TYPE_CHECKING:
    from captioner.inputs.prepare import Prepared


def needs_torch(decoding) -> str | None:
    """What in a `DecodingConfig` only the PyTorch path does (None: nothing). Every decoding setting runs here
    now (grounding, new words, the support penalty, the careful caption, the language-model prior, the sentence
    bank); `captioner.cli.caption.torch_reason` still asks, so a setting added to the PyTorch path alone is
    named here until it is ported."""
    return None


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
    from captioner.errors import CaptionerError
    from captioner.model.config import ModelConfig

    try:
        cfg = ModelConfig(**json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, CaptionerError) as exc:
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


def _tags(tagger, word_probs: np.ndarray) -> list:
    """`NumpyTagger.tags` from the word probabilities already computed (it would compute them again)."""
    from captioner.tags.tag import Tag

    out = []
    for row in word_probs:
        k = min(max(tagger.top_k, 0), len(row))
        idx = np.argsort(-row, kind="stable")[:k]
        out.append([Tag(tagger.labels[i], float(row[i])) for i in idx if row[i] >= tagger.threshold])
    return out


class _StepDecoder(NumpyStepDecoder):
    """`NumpyStepDecoder` with the attention's image projection as one 2-D product: numpy's `@` on a
    (B, P, C) array runs B small products, 5-10x slower on this 2-core CPU (torch's Linear flattens too)."""

    def project(self, feats: np.ndarray) -> np.ndarray:
        b, p, c = feats.shape
        return (feats.reshape(b * p, c) @ self.feat_w + self.feat_b).reshape(b, p, -1)


class LeanCaptioner:
    """A model folder's captioner on ONNX Runtime and numpy: what `captioner.pipeline.Captioner` gives on a CPU
    (`caption`, `caption_many`, `prepare`, `encode`, `decoding_for`), for folders that carry their ONNX runtime.
    The encoder, decoder, tagger, support head and confidence load on first use, so a caller that only needs the
    folder's configuration, vocabulary and weights (`captioner find`) pays for none of them."""

    #: images per encoder call, as `Captioner.encode_chunk` (the same chunks give the same grids)
    encode_chunk = 8

    def __init__(self, folder: str | os.PathLike | None = None, threads: int = 0, workers: int = 2):
        from captioner.model.vocab import Vocab

        self.folder = model_dir(folder)
        if not (self.folder / "config.json").is_file():
            raise ModelLoadError(f"{self.folder} is not a model folder: config.json is missing")
        listed = read_checksums(self.folder)
        entry = (listed or {}).get("runtime", {}).get(ENCODER_FILE)
        if not entry:
            raise ModelLoadError(f"{self.folder} carries no ONNX runtime (scripts/ship_model.py --runtime-only)")
        bad = mismatches(self.folder, [ENCODER_FILE, STEP_FILE, "decoder.safetensors"], listed["files"])
        if bad:
            raise ModelLoadError(f"{self.folder}: {', '.join(bad)} differ from checksums.json")
        self.cfg, self.decoding = read_configs(self.folder, entry)
        try:
            self.vocab = Vocab.load(self.folder / "vocab.json")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{self.folder}: cannot read vocab.json ({exc})") from None
        self.mean, self.std = entry["mean"], entry["std"]
        self.threads, self.workers = threads, workers
        self._loaded: dict = {}

    @property
    def name(self) -> str:
        return self.cfg.name

    def _part(self, key: str, make):
        if key not in self._loaded:
            self._loaded[key] = make()
        return self._loaded[key]

    @property
    def encoder(self):
        from captioner.runtime.ort_session import session

        return self._part("encoder", lambda: session(self.folder / ENCODER_FILE, self.threads))

    @property
    def decoder(self) -> NumpyStepDecoder:
        return self._part("decoder", lambda: _StepDecoder(self.folder, self.threads))

    @property
    def tagger(self):
        from captioner.runtime.numpy_tagger import NumpyTagger

        return self._part("tagger", lambda: NumpyTagger.for_backbone(self.cfg.backbone))

    @property
    def support(self):
        from captioner.runtime.numpy_support import NumpySupport

        return self._part("support", lambda: NumpySupport.load(self.folder,
                                                               self.tagger.labels if self.tagger else None))

    @property
    def reliability(self):
        return self._part("reliability", lambda: Reliability.load(self.folder))

    @property
    def new_words(self):
        from captioner.runtime.numpy_new_words import load_new_words

        return self._part("new_words", lambda: load_new_words(self.folder))

    @property
    def likelihood(self):
        """The teacher-forced likelihood scorer of `decoder.safetensors` on numpy arrays (the sentence bank's)."""
        from captioner.retrieval.numpy_likelihood import NumpyScorer

        return self._part("likelihood", lambda: NumpyScorer.load(self.folder))

    @property
    def bank(self):
        """The folder's sentence bank on numpy arrays (`captioner.bank.runtime.SentenceBank`), or None."""

        def load():
            from captioner.bank.runtime import SentenceBank
            from captioner.bank.store import BANK_FILE
            from captioner.decoding.arrays import NUMPY
            from captioner.runtime.external_weights import SafetensorsFile

            if not (self.folder / BANK_FILE).is_file():
                return None
            dim = SafetensorsFile(self.folder / "decoder.safetensors").header["init_h.weight"]["shape"][1]
            return SentenceBank.load(self.folder, self.vocab, self.cfg.name, dim, xp=NUMPY)

        return self._part("bank", load)

    @property
    def scorer(self):
        from captioner.confidence.calibration import ConfidenceScorer

        return self._part("scorer", lambda: ConfidenceScorer.load(self.folder))

    def decoding_for(self, decoding=None, **changes):
        """As `Captioner.decoding_for`: the fields `decoding`'s caller set laid over the model's decoding, then
        `changes` (None leaves a field)."""
        return (self.decoding if decoding is None else decoding.over(self.decoding)).replace(**changes)

    # ------------------------------------------------------------------ preprocessing
    def prepare(self, item) -> Prepared:
        """As `Captioner.prepare`: open and preprocess one item; errors are captured, never raised."""
        from captioner.inputs.prepare import prepare

        return prepare(item, self.cfg.input_size, lambda img: to_array(img, self.mean, self.std))

    # ------------------------------------------------------------------ model
    def encode(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, N, N, C) encoder grids, in chunks of `encode_chunk` as `Captioner.encode`."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return np.concatenate([self.encoder.run(["features"], {"image": batch[s : s + self.encode_chunk]})[0]
                               for s in range(0, len(batch), self.encode_chunk)])

    def decode(self, features: np.ndarray, decoding=None, word_probs: np.ndarray | None = None) -> list[list]:
        """As `Captioner.decode`: candidates for each encoder grid (best first) with the model's decoding and
        `decoding`'s fields laid over it: the careful caption and the prior gated by confidence
        (`captioner.decoding.stages`), the search plain or grounded (`_search`). `word_probs` (B, W): the
        tagger's word probabilities, when already computed."""
        from captioner.decoding.stages import staged_decode

        decoding = self.decoding_for(decoding)
        return staged_decode(self._search, features, decoding, word_probs, self)

    def _search(self, features: np.ndarray, decoding, word_probs=None) -> list[list]:
        """The search of a whole `decoding`: plain, or grounded (`captioner.tags.steering` on numpy arrays)."""
        from captioner.runtime.numpy_grounding import decode_with_tags

        return decode_with_tags(self.tagger, self.decoder, features, self.vocab, decoding, word_probs,
                                self.reliability, self.support, self.new_words)

    def caption_prepared(self, items: list[Prepared], decoding, keep_features: bool = False) -> list[CaptionResult]:
        """As `Captioner.caption_prepared`: the prepared photos encoded and decoded together."""
        from captioner.confidence.checks import tag_warnings

        ok = [p for p in items if p.error is None]
        cands, tags, grids, presence = [], [], None, None
        if ok:
            grids = self.encode(np.stack([p.pixels for p in ok]))
            tagger = self.tagger
            word_probs = tagger.word_probabilities(grids) if tagger is not None else None
            tags = _tags(tagger, word_probs) if tagger is not None else [[] for _ in ok]
            cands = self.decode(grids, decoding, word_probs)
            if self.scorer is not None and self.support is not None:  # the confidence reads the evidence
                presence = self.support.presence(grids, word_probs).tolist()
            if decoding.bank_shortlist > 0 and self.bank is not None:
                from captioner.bank.runtime import with_bank

                cands = with_bank(self.bank, self.likelihood, grids, cands, decoding, self.support, word_probs)
        results, n = [], 0
        for p in items:
            if p.error is not None:
                results.append(CaptionResult(p.name, error=p.error, beam_size=decoding.beam_size))
                continue
            result = CaptionResult(p.name, cands[n], width=p.size[0], height=p.size[1], beam_size=decoding.beam_size,
                                   tags=tags[n], warnings=list(p.warnings) + tag_warnings(tags[n], p.warnings))
            if keep_features:
                result.features = grids[n].reshape(-1, grids.shape[-1]).astype(np.float16)
            if self.scorer is not None:
                self.scorer.score(result, dict(zip(self.support.names, presence[n])) if presence is not None else None)
            results.append(result)
            n += 1
        return results

    # ------------------------------------------------------------------ public entry points
    def caption(self, source, decoding=None, *, name: str | None = None, keep_features: bool = False,
                **changes) -> CaptionResult:
        """One photo (path, bytes, PIL image or `InputItem`) with the model's decoding, `decoding`'s fields laid
        over it and `changes` (field changes, e.g. beam_size=3); a photo that cannot be read gives `error`."""
        from captioner.inputs.sources import as_item

        item = as_item(source, name=name)
        return self.caption_prepared([self.prepare(item)], self.decoding_for(decoding, **changes),
                                     keep_features=keep_features)[0]

    def caption_many(self, sources, decoding=None, *, batch_size: int = 8, keep_features: bool = False,
                     **changes):
        """As `Captioner.caption_many`: many photos (paths, folders, bytes, PIL images), in order, in batches;
        the next batch is read while this one is captioned."""
        from captioner.inputs.prepare import prepared_batches

        decoding = self.decoding_for(decoding, **changes)
        for prepared in prepared_batches(sources, self.prepare, batch_size, self.workers):
            yield from self.caption_prepared(prepared, decoding, keep_features=keep_features)

    def caption_video(self, path: str | os.PathLike, decoding=None, *, max_shot: float = 10.0, name: str | None = None,
                      progress=None, frame_size: int | None = None, **changes):
        """As `Captioner.caption_video` (the same work, `captioner.video.segments.caption_video`, on this
        captioner): shots detected, the sharpest frame near each segment's middle captioned like a photo, equal
        neighbours merged; a `captioner.video.VideoResult` (`segments`, or `error`; never raised)."""
        from captioner.video.segments import caption_video

        decoding = self.decoding_for(decoding, **changes)
        return caption_video(self, path, decoding, max_shot=max_shot, name=name, progress=progress,
                             frame_size=frame_size)
