"""`Candidate`: one decoded caption with its score and per-word attention."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class Candidate:
    """One decoded caption."""

    tokens: list[str]
    ids: list[int]  # word ids, `<end>` included when it was emitted
    score: float  # summed log-probability
    attention: torch.Tensor  # (words, N, N), one map per generated word
    confidence: float | None = None  # calibrated chance (0..1) that the caption is acceptable; None: no calibration
    source: str = "generated"  # where the caption came from: "generated" (decoded) or "bank" (a human sentence)

    @property
    def caption(self) -> str:
        return " ".join(self.tokens)

    @property
    def normalized_score(self) -> float:
        """Mean log-probability per emitted token."""
        return self.score / max(len(self.ids), 1)

    def to_dict(self, with_attention: bool = False) -> dict:
        d = {"caption": self.caption, "tokens": self.tokens, "score": round(self.score, 6),
             "normalized_score": round(self.normalized_score, 6),
             "confidence": None if self.confidence is None else round(float(self.confidence), 4),
             "source": self.source}
        if with_attention:
            d["attention"] = self.attention.tolist()
        return d
