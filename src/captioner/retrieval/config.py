"""`FindConfig`: how find-by-description scores and fuses (the `captioner find` flags come from it).

The prior and full-text weights, the shortlist's size and its share of full-text hits were chosen on
Flickr8k's validation photos (scripts/eval_retrieval.py --tune), never on the test photos.
"""
from __future__ import annotations

from dataclasses import dataclass

from captioner.settings import Settings, setting

#: (slope, intercept, cutoff) of the match strength, from scripts/choose_find_threshold.py (300 validation
#: captions, each against its own photo and 20 others: AUC 0.780; the cutoff 0.55, a likelihood of -3.29 nats
#: per word, keeps 67% of the own photos and drops 77% of the others).
STRENGTH = (1.0026, 3.5007, 0.55)


@dataclass(frozen=True)
class FindConfig(Settings):
    top: int = setting(10, "how many photos to list", lo=1)
    prior_weight: float = setting(
        0.0, "how much of each photo's prior (its mean likelihood over everyday captions) is subtracted "
        "(0: none; on validation photos 0 and 0.25 did equally well, 1 lost a fifth of recall@5)", lo=0, hi=100)
    fulltext_weight: float = setting(
        0.1, "weight of the full-text match (1 for the best full-text hit, less further down) added to the "
        "likelihood (nats per word)", lo=0, hi=100)
    fulltext_hits: int = setting(100, "full-text hits taken into the fusion", lo=1)
    shortlist: int = setting(
        300, "at most this many photos are scored by likelihood; a larger gallery is shortlisted first (see "
        "--first-stage). 1,000 validation photos: 150 or 300 shortlisted by the first stage gave recall@5 "
        "0.45, recall@10 0.61 / 0.60, against 0.45 / 0.59 scoring all; in bigger galleries 300 keeps more "
        "(the first stage's recall@150 / @300 with 6,000 extra photos: 0.57 / 0.73); 150 is twice as fast",
        lo=1)
    first_stage: bool = setting(
        True, "shortlist by the first stage (a linear map from the description's words to pooled photo "
        "features, fitted on Flickr8k training captions) when the model has one")
    shortlist_fulltext: int = setting(
        25, "with the first stage: at most this many of the best full-text hits enter the shortlist, the "
        "first stage's best fill the rest", lo=0)
    prune_after: int = setting(
        3, "every photo is scored on the first PRUNE_AFTER words of the description ...", lo=0)
    prune_keep: int = setting(
        0, "... and only the best PRUNE_KEEP of them to the end (0: every photo to the end; faster, but "
        "3 words and 150 photos lost a quarter of recall@10 on validation photos)", lo=0)
    generic_captions: int = setting(8, "everyday captions the prior is the mean likelihood over", lo=1, cli=False)
    #: The match strength the studio shows: 1 / (1 + exp(-(slope * likelihood + intercept))), and the cutoff
    #: under which a photo is not shown ("nothing matches well"); chosen on Flickr8k's validation photos by
    #: scripts/choose_find_threshold.py (a caption against its own photo and 20 others).
    strength_slope: float = setting(STRENGTH[0], "match strength: slope", cli=False)
    strength_intercept: float = setting(STRENGTH[1], "match strength: intercept", cli=False)
    strength_cutoff: float = setting(STRENGTH[2], "match strength: cutoff", cli=False)
