"""`Tag`: one plain word for an object the photo likely shows, with its score."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tag:
    """A plain, searchable word (`cat`, `pizza`, `golden retriever`) and the classifier's probability
    for it (the ImageNet classes that map to the word, summed), 0..1."""

    label: str
    score: float

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(float(self.score), 4)}

    @classmethod
    def from_dict(cls, d: dict) -> Tag:
        return cls(str(d["label"]), float(d["score"]))
