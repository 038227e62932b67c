"""Inference: input items -> preprocessing -> encoder -> decoding -> `CaptionResult`s.

`Captioner` is what the CLI, the studio and scripts use. It decodes with the model's
`DecodingConfig` unless given another (or a few changed fields: `caption(x, beam_size=3)`).
Images are decoded and resized in a thread pool while the model works on the previous batch; one bad file yields a result with an
`error` and never stops the others.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captioner.confidence.calibration import ConfidenceScorer
from captioner.confidence.checks import tag_warnings
from captioner.decoding.candidate import Candidate
from captioner.decoding.config import DecodingConfig
from captioner.decoding.search import decode
from captioner.device import resolve_device
from captioner.errors import CaptionerError
from captioner.inputs.images import to_tensor
from captioner.inputs.prepare import Prepared, prepare, prepared_batches
from captioner.inputs.sources import InputItem, as_item
from captioner.model.folder import CaptionModel, default_model_dir, load_model
from captioner.result import CaptionResult
from captioner.runtime import onnx_runtime
from captioner.runtime.fused_decoder import InferenceDecoder
from captioner.video.segments import VideoResult

__all__ = ["CaptionResult", "Captioner", "default_model_dir", "load_default_model"]


def load_default_model() -> CaptionModel:
    return load_model(None)


def folder_extras(folder: str | Path) -> dict:
    """The optional files of a model folder beside its weights, as `Captioner`'s keyword arguments (each
    None when the folder lacks it): the confidence calibration, the new words, the tag reliability; and
    the sentence bank's source (the bank loads on first use)."""
    from captioner.bank.runtime import BankSource
    from captioner.support.head import SupportHead
    from captioner.tags.new_words import NewWords
    from captioner.tags.reliability import TagReliability

    return {"scorer": ConfidenceScorer.load(folder), "new_words": NewWords.load(folder),
            "tag_reliability": TagReliability.load(folder), "bank": BankSource(folder),
            "support_head": SupportHead.load(folder)}


#: a `Captioner` argument left out: read from the model's folder (`CaptionModel.folder`) when it has one
FROM_FOLDER: Any = type("FromFolder", (), {"__repr__": lambda self: "FROM_FOLDER"})()
_EXTRAS = ("scorer", "new_words", "tag_reliability", "bank", "support_head")


class Captioner:
    def __init__(self, model: CaptionModel, device: str | torch.device = "cpu", workers: int = 2,
                 onnx: bool | None = None, scorer: ConfidenceScorer | None = FROM_FOLDER, new_words=FROM_FOLDER,
                 tag_reliability=FROM_FOLDER, bank=FROM_FOLDER, support_head=FROM_FOLDER):
        """`onnx`: run the encoder through ONNX Runtime (CPU only; None: when available). The model folder's
        optional files: each one left out is read from the folder the model was loaded from
        (`CaptionModel.folder`, set by `load_model`; `folder_extras`), so `Captioner(load_model(dir))` is
        `Captioner.from_pretrained(dir)`; None leaves one out; a model built in memory (no folder) has none.
        `scorer`: the model folder's confidence calibration (None: no confidence).
        `new_words`: the model folder's `captioner.tags.new_words.NewWords` (grounded decoding may
        generate them; `Captioner.load` finds them; None: the model's own vocabulary only).
        `tag_reliability`: the model folder's `captioner.tags.reliability.TagReliability` (which tag words
        may steer with `DecodingConfig.tag_reliable`; None: every tag). `bank`: the model folder's
        `captioner.bank.runtime.BankSource` (human sentences that may replace a caption when
        `DecodingConfig.bank_shortlist` > 0; None: captions are always generated). `support_head`: the
        model folder's `captioner.support.head.SupportHead` (evidence for and against object words, used
        with `DecodingConfig.support_penalty`; None: no penalty)."""
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.encoder = model.encoder.to(memory_format=torch.channels_last)
        self.onnx_encoder = None
        self.use_onnx = self.device.type == "cpu" and onnx is not False
        if self.use_onnx:
            self.onnx_encoder = onnx_runtime.onnx_encoder_for(model.encoder, model.cfg.input_size)
            if onnx and self.onnx_encoder is None:
                raise CaptionerError(f"the ONNX Runtime encoder is not available: {onnx_runtime.last_error}")
        self._fast_decoder, self._fast_key = None, None
        self.workers = workers
        self.cfg = model.cfg
        self.decoding = model.decoding  # the model's default decoding
        self._tagger, self._tagger_loaded = None, False
        given = {"scorer": scorer, "new_words": new_words, "tag_reliability": tag_reliability, "bank": bank,
                 "support_head": support_head}
        if any(v is FROM_FOLDER for v in given.values()):
            found = folder_extras(model.folder) if getattr(model, "folder", None) is not None else {}
            given = {k: found.get(k) if v is FROM_FOLDER else v for k, v in given.items()}
        scorer, new_words, tag_reliability, bank, support_head = (given[k] for k in _EXTRAS)
        self.scorer = scorer
        self.new_words = new_words
        self.tag_reliability = tag_reliability
        self.bank = bank
        self.support_head, self._support = support_head, None

    @classmethod
    def from_pretrained(cls, model_dir: str | Path | None = None, device: str = "cpu") -> Captioner:
        """The one way in: a model folder (default: $CAPTIONER_MODEL, else the shipped model) with every optional
        file it has (`folder_extras`: confidence, new words, tag reliability, sentence bank, support head) and
        its ONNX runtime when it carries one. `load` is the same function."""
        return cls(load_model(model_dir), device)

    load = from_pretrained

    @property
    def name(self) -> str:
        return self.cfg.name

    def decoding_for(self, decoding: DecodingConfig | None = None, **changes) -> DecodingConfig:
        """The model's decoding with the fields `decoding`'s caller set laid over it (`DecodingConfig.over`:
        `DecodingConfig(beam_size=3)` keeps the model's other settings), then `changes` (None leaves a field)."""
        return (self.decoding if decoding is None else decoding.over(self.decoding)).replace(**changes)

    # ------------------------------------------------------------------ preprocessing
    def prepare(self, item: InputItem | Any) -> Prepared:
        """Open and preprocess one item (or a bare source, see `as_item`); errors are captured, never raised."""
        return prepare(item, self.cfg.input_size, lambda img: to_tensor(img, self.model.mean, self.model.std))

    # ------------------------------------------------------------------ model
    #: images per encoder call: the CNN runs faster per image in chunks of about 8 on a CPU, while
    #: beam search gains from decoding the whole batch together (benchmarks/bench_caption.py, batching)
    encode_chunk = 8

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        if self.onnx_encoder is not None:
            encoder = self.onnx_encoder
        else:
            batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
            encoder = self.encoder
        return torch.cat([encoder(batch[s : s + self.encode_chunk]) for s in range(0, len(batch), self.encode_chunk)])

    @property
    def fast_decoder(self):
        """The decoder beam search runs on: transposed, fused copies of the decoder weights
        (`InferenceDecoder`), with its step in ONNX Runtime on the CPU when available. Rebuilt when
        the decoder's weights change (their version counters move)."""
        key = tuple(p._version for p in self.model.decoder.parameters())
        if self._fast_decoder is None or key != self._fast_key:
            with torch.no_grad():
                fast = InferenceDecoder(self.model.decoder).to(self.device)
            if self.use_onnx:
                fast = onnx_runtime.onnx_step_decoder_for(fast) or fast
            self._fast_decoder, self._fast_key = fast, key
        return self._fast_decoder

    @property
    def tagger(self):
        """The backbone's `ObjectTagger` (None when it has no ImageNet classifier), loaded on first use."""
        if not self._tagger_loaded:
            from captioner.tags.tagger import ObjectTagger

            self._tagger = ObjectTagger.for_backbone(self.cfg.backbone)
            self._tagger_loaded = True
        return self._tagger

    @property
    def support(self):
        """The `captioner.support.penalty.SupportEvidence` of the model folder's support head and the
        tagger (None without a head), made on first use."""
        if self._support is None and self.support_head is not None:
            from captioner.support.penalty import SupportEvidence

            tagger = self.tagger
            self._support = SupportEvidence(self.support_head, tagger.labels if tagger is not None else None)
        return self._support

    @torch.inference_mode()
    def decode(self, features: torch.Tensor, decoding: DecodingConfig | None = None,
               word_probs: torch.Tensor | None = None) -> list[list[Candidate]]:
        """Beam search on encoder grids. With `decoding.tag_bonus` > 0 (grounded decoding), a photo with a
        confident tag (`tag_min`) whose best caption names none of its tags takes the caption of a search
        with the tag bonus, run side by side in the same batched search (`captioner.tags.grounding`);
        words the vocabulary lacks (`new_words`) may then be generated for photos tagged with them; with
        `decoding.tag_reliable`, only the tag words people name often enough steer (`tag_reliability`).
        `word_probs` (B, W): the tagger's word probabilities, when already computed. The careful caption and the
        prior gated by confidence come first (`captioner.decoding.stages`, shared with the torch-free path)."""
        from captioner.decoding.stages import staged_decode

        decoding = self.decoding_for(decoding)
        return staged_decode(self._search, features, decoding, word_probs, self)

    def _search(self, features: torch.Tensor, decoding: DecodingConfig, word_probs=None) -> list[list[Candidate]]:
        """The search of a whole `decoding`: plain, or grounded (`decode`'s last step)."""
        penalised = decoding.support_penalty > 0 and self.support is not None
        if (decoding.tag_bonus <= 0 or self.tagger is None) and not penalised:
            return decode(self.fast_decoder, features, self.model.vocab, decoding)
        from captioner.tags.grounding import decode_with_tags

        return decode_with_tags(self.tagger, self.fast_decoder, features, self.model.vocab, decoding,
                                self.new_words, word_probs, self.tag_reliability,
                                self.support if penalised else None)

    def caption_prepared(self, items: list[Prepared], decoding: DecodingConfig,
                         keep_features: bool = False) -> list[CaptionResult]:
        ok = [p for p in items if p.error is None]
        cands, tags, feats, support, presence = [], [], None, None, None
        if ok:
            feats = self.encode(torch.stack([p.pixels for p in ok]))
            tagger = self.tagger
            word_probs = tagger.word_probabilities(feats) if tagger is not None else None
            tags = tagger.tags_from_word_probabilities(word_probs) if tagger is not None else [[] for _ in ok]
            cands = self.decode(feats, decoding, word_probs)
            support = self.support if self.scorer is not None else None  # the confidence reads the evidence
            presence = support.presence(feats, word_probs).tolist() if support is not None else None
            if decoding.bank_shortlist > 0 and self.bank is not None:
                from captioner.bank.runtime import with_bank

                cands = with_bank(self.bank.for_model(self.model), self.model.decoder, feats, cands, decoding,
                                  self.support, word_probs)
        results = []
        n = 0
        for p in items:
            if p.error is not None:
                results.append(CaptionResult(p.name, error=p.error, beam_size=decoding.beam_size))
                continue
            result = CaptionResult(p.name, cands[n], None, p.size[0], p.size[1], decoding.beam_size,
                                   tags=tags[n], warnings=list(p.warnings) + tag_warnings(tags[n], p.warnings))
            if keep_features:
                grid = feats[n]
                result.features = grid.reshape(-1, grid.shape[-1]).float().cpu().numpy().astype(np.float16)
            if self.scorer is not None:
                self.scorer.score(result, dict(zip(support.names, presence[n])) if presence is not None else None)
            results.append(result)
            n += 1
        return results

    # ------------------------------------------------------------------ public entry points
    def caption(self, source, decoding: DecodingConfig | None = None, *, name: str | None = None,
                keep_features: bool = False, **changes) -> CaptionResult:
        """One image (path, bytes, PIL image or `InputItem`), decoded with `decoding` (default: the
        model's) and any field changes, e.g. `caption("dog.jpg", beam_size=3)`. `keep_features`:
        the result carries the encoder grid (`CaptionResult.features`)."""
        item = as_item(source, name=name)
        return self.caption_prepared([self.prepare(item)], self.decoding_for(decoding, **changes),
                                     keep_features=keep_features)[0]

    def caption_many(self, sources: Iterable, decoding: DecodingConfig | None = None, *, batch_size: int = 8,
                     keep_features: bool = False, **changes) -> Iterator[CaptionResult]:
        """Many images (paths, folders, bytes, PIL images, `InputItem`s), in order, in batches;
        preprocessing of the next batch overlaps the model's work on this one."""
        decoding = self.decoding_for(decoding, **changes)
        for prepared in prepared_batches(sources, self.prepare, batch_size, self.workers):
            yield from self.caption_prepared(prepared, decoding, keep_features=keep_features)

    def caption_video(self, path: str | os.PathLike, decoding: DecodingConfig | None = None, *,
                      max_shot: float = 10.0, name: str | None = None, progress=None,
                      frame_size: int | None = None, **changes) -> VideoResult:
        """A video file: shots detected (PySceneDetect), shots longer than `max_shot` seconds split, the
        sharpest of a few frames near the middle of each segment captioned like a photo, consecutive
        equal captions merged. Returns a `captioner.video.VideoResult` (`segments`, or `error` when the
        file cannot be read; never raised). `progress(stage, done, total)`, if given, follows the work,
        and `frame_size` keeps each segment's captioned frame (that many pixels on its long side) in
        `Segment.frame` (see `captioner.video.segments.caption_video`)."""
        from captioner.video.segments import caption_video

        return caption_video(self, path, self.decoding_for(decoding, **changes), max_shot=max_shot, name=name,
                             progress=progress, frame_size=frame_size)
