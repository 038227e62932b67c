"""How often people name a tag word when the tagger sees it: the reliability of each tag word for
grounded decoding (`DecodingConfig.tag_reliable`).

A model folder may hold `tag_reliability.json` (made by `scripts/fit_tag_reliability.py` on Flickr8k
train): for each tag word, the number of training photos where the tagger gives it at least the
file's `tag_min`, and how many of those have a human caption naming the word (or its plural). Some
confident tags are words people rarely say (`gymnast` 3%, `unicycle` 12%, `helmet` 21%, `stage` 18%
on Flickr8k train, where `dog` is 97%); steering a caption toward them gives "a helmet is riding a
motorcycle". The share is smoothed toward `prior` with `strength` pseudo-photos, so a word the
training photos never showed (`pizza`, `zebra`) counts as `prior`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from captioner.model.config import load_optional

RELIABILITY_FILE = "tag_reliability.json"


@dataclass(frozen=True)
class TagReliability:
    counts: dict[str, tuple[int, int]]  # word -> (photos the tagger saw it in, photos whose captions name it)
    prior: float = 0.5
    strength: float = 5.0
    about: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> TagReliability:
        counts = {str(w): (int(c[0]), int(c[1])) for w, c in data["words"].items()}
        return cls(counts, float(data.get("prior", 0.5)), float(data.get("strength", 5.0)), dict(data.get("about", {})))

    def to_dict(self) -> dict:
        return {"about": self.about, "prior": self.prior, "strength": self.strength,
                "words": {w: list(c) for w, c in sorted(self.counts.items())}}

    @classmethod
    def load(cls, folder: str | Path | None) -> TagReliability | None:
        """The table of a model folder, or None when it has none (then every tag may steer)."""
        return load_optional(folder, RELIABILITY_FILE, cls.from_dict)

    def share(self, word: str) -> float:
        """The smoothed share of photos with this confident tag whose captions name it."""
        seen, named = self.counts.get(word, (0, 0))
        return (named + self.strength * self.prior) / (seen + self.strength)
