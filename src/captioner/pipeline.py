"""Inference: image files -> preprocessing -> encoder -> beam search -> `CaptionResult`s.

`Captioner` is what the CLI, the studio and scripts use. Images are decoded and resized in a
thread pool while the model works on the previous batch; one bad file yields a result with an
`error` and never stops the others.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from captioner.decoding.search import Candidate, decode
from captioner.errors import CaptionerError, ModelLoadError
from captioner.inputs.images import open_image, original_size, resize_square, to_tensor
from captioner.model.folder import DEFAULT_MODEL_DIR, CaptionModel
from captioner.runtime import onnx_runtime
from captioner.runtime.fused_decoder import InferenceDecoder


@dataclass
class CaptionResult:
    """Captions for one image, best first, or the reason it could not be captioned."""

    image: str
    candidates: list[Candidate] = field(default_factory=list)
    error: str | None = None
    width: int | None = None
    height: int | None = None
    beam_size: int | None = None

    @property
    def caption(self) -> str | None:
        return self.candidates[0].caption if self.candidates else None

    def to_dict(self, with_attention: bool = False) -> dict:
        return {"image": self.image, "candidates": [c.to_dict(with_attention) for c in self.candidates],
                "error": self.error}


@dataclass
class _Prepared:
    name: str
    tensor: torch.Tensor | None = None
    size: tuple[int, int] | None = None
    error: str | None = None


def default_model_dir() -> Path:
    """The model used when none is named: $CAPTIONER_MODEL, else the shipped weights/ folder."""
    return Path(os.environ.get("CAPTIONER_MODEL", DEFAULT_MODEL_DIR))


def load_default_model() -> CaptionModel:
    folder = default_model_dir()
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"No captioning model is installed in {folder}. Train one with `captioner train` and pass "
            "--model DIR, or reinstall the package to get the shipped default model."
        )
    return CaptionModel.load(folder)


class Captioner:
    def __init__(self, model: CaptionModel, device: str | torch.device = "cpu", workers: int = 2,
                 onnx: bool | None = None):
        """`onnx`: run the encoder through ONNX Runtime (CPU only; None: when available)."""
        self.model = model.to(device).eval()
        self.device = torch.device(device)
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

    @classmethod
    def load(cls, model_dir: str | Path | None = None, device: str = "cpu") -> Captioner:
        model = CaptionModel.load(model_dir) if model_dir else load_default_model()
        return cls(model, device)

    @property
    def name(self) -> str:
        return self.cfg.name

    # ------------------------------------------------------------------ preprocessing
    def prepare(self, source, name: str | None = None) -> _Prepared:
        """Open and preprocess one image; errors are captured, never raised."""
        label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "image")
        try:
            img = source.convert("RGB") if isinstance(source, Image.Image) else open_image(source, draft_size=self.cfg.input_size)
            size = original_size(img)
            tensor = to_tensor(resize_square(img, self.cfg.input_size), self.model.mean, self.model.std)
            return _Prepared(label, tensor, size)
        except CaptionerError as exc:
            return _Prepared(label, error=str(exc))
        except Exception as exc:  # never let one odd file stop a batch
            return _Prepared(label, error=f"{label}: could not be read ({type(exc).__name__}: {exc})")

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

    @torch.inference_mode()
    def decode(self, features: torch.Tensor, beam_size: int, max_len: int | None = None) -> list[list[Candidate]]:
        return decode(self.fast_decoder, features, self.model.vocab, beam_size,
                      max_len or self.cfg.max_caption_len, self.cfg.length_penalty, self.cfg.no_repeat_ngram)

    def caption_prepared(self, items: list[_Prepared], beam_size: int, max_len: int | None = None) -> list[CaptionResult]:
        ok = [p for p in items if p.error is None]
        cands = self.decode(self.encode(torch.stack([p.tensor for p in ok])), beam_size, max_len) if ok else []
        by_name = iter(cands)
        results = []
        for p in items:
            if p.error is not None:
                results.append(CaptionResult(p.name, error=p.error, beam_size=beam_size))
            else:
                results.append(CaptionResult(p.name, next(by_name), None, p.size[0], p.size[1], beam_size))
        return results

    # ------------------------------------------------------------------ public entry points
    def caption(self, source, beam_size: int = 3, max_len: int | None = None, name: str | None = None) -> CaptionResult:
        """One image (path, bytes or PIL image)."""
        return self.caption_prepared([self.prepare(source, name)], beam_size, max_len)[0]

    def caption_many(self, sources: Iterable, beam_size: int = 3, max_len: int | None = None,
                     batch_size: int = 8) -> Iterator[CaptionResult]:
        """Many images, in order, in batches; decoding of the next batch overlaps the model's work."""
        sources = list(sources)
        batches = [sources[i : i + batch_size] for i in range(0, len(sources), batch_size)]
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(lambda b: [self.prepare(s) for s in b], batches[0])] if batches else []
            for n in range(len(batches)):
                if n + 1 < len(batches):
                    futures.append(pool.submit(lambda b: [self.prepare(s) for s in b], batches[n + 1]))
                prepared, futures[n] = futures[n].result(), None  # drop finished batches: memory stays flat
                yield from self.caption_prepared(prepared, beam_size, max_len)
