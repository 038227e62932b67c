"""`CaptionResult`: the captions of one photo, best first, or why it could not be captioned.

The one result object of every path (the PyTorch `captioner.pipeline.Captioner` and the torch-free
`captioner.runtime.lean.LeanCaptioner`); it imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from captioner.decoding.candidate import Candidate
from captioner.tags.tag import Tag


@dataclass
class CaptionResult:
    """Captions for one image, best first, or the reason it could not be captioned.

    `tags`: the objects the backbone's ImageNet classifier sees, as plain words (empty when the
    backbone has none); `confidence`: the calibrated chance (0..1) that the best caption is
    acceptable (None when the model folder has no calibration); `warnings`: why a caption may be
    unreliable (a tiny, blank, elongated or screenshot-like image; low confidence); `features`: the
    encoder grid (N*N, C) as float16, only when asked for with `keep_features=True`."""

    image: str
    candidates: list[Candidate] = field(default_factory=list)
    error: str | None = None
    width: int | None = None
    height: int | None = None
    beam_size: int | None = None
    tags: list[Tag] = field(default_factory=list)
    confidence: float | None = None
    warnings: list[str] = field(default_factory=list)
    features: np.ndarray | None = field(default=None, repr=False)

    @property
    def caption(self) -> str | None:
        return self.candidates[0].caption if self.candidates else None

    def to_dict(self, with_attention: bool = False) -> dict:
        return {"image": self.image, "candidates": [c.to_dict(with_attention) for c in self.candidates],
                "error": self.error, "tags": [t.to_dict() for t in self.tags],
                "confidence": None if self.confidence is None else round(float(self.confidence), 4),
                "warnings": list(self.warnings)}
