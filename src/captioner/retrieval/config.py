"""`FindConfig`: how find-by-description scores and fuses (the `captioner find` flags come from it).

The prior and full-text weights, the shortlist's size and its share of full-text hits were chosen on
Flickr8k's validation photos (scripts/eval_retrieval.py --tune), never on the test photos.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from captioner.errors import ConfigError

#: (slope, intercept, cutoff) of the match strength, from scripts/choose_find_threshold.py (300 validation
#: captions, each against its own photo and 20 others: AUC 0.780; the cutoff 0.55, a likelihood of -3.29 nats
#: per word, keeps 67% of the own photos and drops 77% of the others).
STRENGTH = (1.0026, 3.5007, 0.55)


@dataclass(frozen=True)
class FindConfig:
    top: int = field(default=10, metadata={"help": "how many photos to list"})
    prior_weight: float = field(default=0.0, metadata={
        "help": "how much of each photo's prior (its mean likelihood over everyday captions) is subtracted "
                "(0: none; on validation photos 0 and 0.25 did equally well, 1 lost a fifth of recall@5)"})
    fulltext_weight: float = field(default=0.1, metadata={
        "help": "weight of the full-text match (1 for the best full-text hit, less further down) added to the "
                "likelihood (nats per word)"})
    fulltext_hits: int = field(default=100, metadata={"help": "full-text hits taken into the fusion"})
    shortlist: int = field(default=300, metadata={
        "help": "at most this many photos are scored by likelihood; a larger gallery is shortlisted first (see "
                "--first-stage). 1,000 validation photos: 150 or 300 shortlisted by the first stage gave recall@5 "
                "0.45, recall@10 0.61 / 0.60, against 0.45 / 0.59 scoring all; in bigger galleries 300 keeps more "
                "(the first stage's recall@150 / @300 with 6,000 extra photos: 0.57 / 0.73); 150 is twice as fast"})
    first_stage: bool = field(default=True, metadata={
        "help": "shortlist by the first stage (a linear map from the description's words to pooled photo "
                "features, fitted on Flickr8k training captions) when the model has one"})
    shortlist_fulltext: int = field(default=25, metadata={
        "help": "with the first stage: at most this many of the best full-text hits enter the shortlist, the "
                "first stage's best fill the rest"})
    prune_after: int = field(default=3, metadata={
        "help": "every photo is scored on the first PRUNE_AFTER words of the description ..."})
    prune_keep: int = field(default=0, metadata={
        "help": "... and only the best PRUNE_KEEP of them to the end (0: every photo to the end; faster, but "
                "3 words and 150 photos lost a quarter of recall@10 on validation photos)"})
    generic_captions: int = field(default=8, metadata={"cli": False})
    #: The match strength the studio shows: 1 / (1 + exp(-(slope * likelihood + intercept))), and the cutoff
    #: under which a photo is not shown ("nothing matches well"); chosen on Flickr8k's validation photos by
    #: scripts/choose_find_threshold.py (a caption against its own photo and 20 others).
    strength_slope: float = field(default=STRENGTH[0], metadata={"cli": False})
    strength_intercept: float = field(default=STRENGTH[1], metadata={"cli": False})
    strength_cutoff: float = field(default=STRENGTH[2], metadata={"cli": False})

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in (bool, "bool"):
                if not isinstance(value, bool):
                    raise ConfigError(f"{f.name.replace('_', '-')} must be true or false, not {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{f.name.replace('_', '-')} must be a number, not {value!r}")
        for name in ("prune_after", "prune_keep", "shortlist_fulltext"):
            if getattr(self, name) < 0 or getattr(self, name) != int(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number (0 or more), "
                                  f"not {getattr(self, name)}")
        for name in ("top", "fulltext_hits", "shortlist", "generic_captions"):
            if getattr(self, name) < 1 or getattr(self, name) != int(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number of at least 1, "
                                  f"not {getattr(self, name)}")
        for name in ("prior_weight", "fulltext_weight"):
            if not 0 <= getattr(self, name) <= 100:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 100, not {getattr(self, name)}")
