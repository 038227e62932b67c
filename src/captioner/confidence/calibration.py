"""One calibrated confidence per caption: the chance that it is "acceptable" (its CIDEr-D against
human references at least the threshold stored with the calibration), from the model's own scores.

Features of a candidate (`candidate_features`): its mean log-probability per token, its margin over
the best other candidate, the length in words, the tagger's top word probability, the probability
of the most likely tag that the caption names, and how well the photo supports the objects the caption
names (`captioner.support`: the lowest presence among its object concepts, and how many are under 0.2), and how
much of the tags' mass lies on everyday objects (`scene_objects`: food, kitchenware, furniture, parked vehicles;
`captioner.support.scene`), where a Flickr8k-trained caption is least at home.
A calibration names the features it uses, so a file fitted on the first five still loads. A logistic
model on these (fitted on Flickr8k validation by `scripts/calibrate_confidence.py`, stored as `confidence.json` in the model folder) and
an isotonic map of its output give the confidence. Inputs the calibration data never held (tiny,
blank, elongated, screenshot-like images: see `checks`) are capped at `WARNING_CAP`: the model's
scores on them are meaningless, and no validation photo can say how meaningless.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the confidence of a caption for an image with an input warning is at most this
WARNING_CAP = 0.05
CALIBRATION_FILE = "confidence.json"
ALL_FEATURES = ("mean_logprob", "margin", "length", "tag_top", "tag_named", "support_min", "support_low",
                "scene_objects", "support_mean")
#: the features `scripts/calibrate_confidence.py` fits by default
FEATURES = ALL_FEATURES[:7]
#: below this presence an object the caption names counts as poorly supported (`support_low`)
LOW_SUPPORT = 0.2


def _named(label: str, tokens: set[str]) -> bool:
    """Whether a caption (its token set) names a tag: any word of the label, or its plural."""
    for w in label.replace("-", " ").split():
        if w in tokens or w + "s" in tokens or w + "es" in tokens:
            return True
    return False


def support_features(tokens: list[str], presence: Mapping[str, float] | None) -> tuple[float, float, float]:
    """(lowest presence among the object concepts the caption names that have evidence (1.0: none),
    how many of them are under `LOW_SUPPORT`, their mean presence (1.0: none)); `presence`: concept ->
    probability (None: no evidence)."""
    if not presence:
        return 1.0, 0.0, 1.0
    from captioner.evaluation.hallucination import mentions

    values = [presence[c] for c in dict.fromkeys(m.concept for m in mentions(tokens)) if c in presence]
    if not values:
        return 1.0, 0.0, 1.0
    return min(values), float(sum(v < LOW_SUPPORT for v in values)), float(sum(values) / len(values))


def candidate_features(candidates: list, index: int, tags: list,
                       presence: Mapping[str, float] | None = None) -> list[float]:
    """The features of `candidates[index]` (see the module docstring); `tags`: the image's `Tag`s;
    `presence`: the photo's support evidence per concept (`SupportEvidence.presence`, by name)."""
    cand = candidates[index]
    norm = cand.normalized_score
    others = [c.normalized_score for j, c in enumerate(candidates) if j != index]
    margin = norm - max(others) if others else 0.0
    tokens = set(cand.tokens)
    tag_top = max((t.score for t in tags), default=0.0)
    tag_named = max((t.score for t in tags if _named(t.label, tokens)), default=0.0)
    low_min, n_low, mean_support = support_features(cand.tokens, presence)
    from captioner.support.scene import tag_object_mass

    return [float(norm), float(max(min(margin, 5.0), -5.0)), float(len(cand.tokens)), float(tag_top), float(tag_named),
            float(low_min), n_low, tag_object_mass(tags), mean_support]


def isotonic_fit(x: np.ndarray, y: np.ndarray, bins: int = 20) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators on (x, y) sorted by x, summarised as at most `bins` knots for
    `np.interp` (a non-decreasing map)."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order].astype(float), y[order].astype(float)
    blocks = [[ys[0], 1.0, xs[0], xs[0]]]  # mean, weight, x-lo, x-hi
    for xv, yv in zip(xs[1:], ys[1:]):
        blocks.append([yv, 1.0, xv, xv])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, lo2, hi2 = blocks.pop()
            m1, w1, lo1, hi1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, lo1, hi2])
    kx = [(b[2] + b[3]) / 2 for b in blocks]
    ky = [b[0] for b in blocks]
    if len(kx) > bins:  # thin the knots, keeping the ends
        idx = np.unique(np.linspace(0, len(kx) - 1, bins).round().astype(int))
        kx, ky = [kx[i] for i in idx], [ky[i] for i in idx]
    return [float(v) for v in kx], [float(v) for v in ky]


@dataclass
class ConfidenceScorer:
    """A fitted calibration (`confidence.json`): standardised features -> logistic -> isotonic."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    iso_x: list[float] = field(default_factory=list)
    iso_y: list[float] = field(default_factory=list)
    low: float = 0.3  # below this a caption is flagged "low confidence"
    features: tuple = FEATURES
    about: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ io
    @classmethod
    def from_dict(cls, d: dict) -> ConfidenceScorer:
        names = tuple(d.get("features", ()))
        if not names or not set(names) <= set(ALL_FEATURES) or len(d["coef"]) != len(names):
            raise ValueError(f"confidence calibration for features {d.get('features')}, known: {list(ALL_FEATURES)}")
        return cls(list(d["mean"]), list(d["scale"]), list(d["coef"]), float(d["intercept"]),
                   list(d.get("iso_x", [])), list(d.get("iso_y", [])), float(d.get("low", 0.3)),
                   names, dict(d.get("about", {})))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "mean": self.mean, "scale": self.scale, "coef": self.coef,
                "intercept": self.intercept, "iso_x": self.iso_x, "iso_y": self.iso_y, "low": self.low,
                "about": self.about}

    @classmethod
    def load(cls, folder: str | Path | None) -> ConfidenceScorer | None:
        """The calibration of a model folder, or None when it has none (or an unreadable one: a
        caption then simply has no confidence)."""
        from captioner.model.config import load_optional

        return load_optional(folder, CALIBRATION_FILE, cls.from_dict)

    def save(self, folder: str | Path) -> None:
        Path(folder, CALIBRATION_FILE).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    # ------------------------------------------------------------------ scoring
    def columns(self, x: np.ndarray) -> np.ndarray:
        """`x` (n, all features, `ALL_FEATURES`) -> the columns this calibration uses (as given when `x`
        already has only those)."""
        x = np.asarray(x, float)
        if x.shape[-1] == len(self.features):
            return x
        return x[..., [ALL_FEATURES.index(f) for f in self.features]]

    def raw(self, x: np.ndarray) -> np.ndarray:
        """(n, features) -> the logistic model's probability, before the isotonic map."""
        z = (self.columns(x) - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))

    def probability(self, x: np.ndarray) -> np.ndarray:
        p = self.raw(x)
        if self.iso_x:
            p = np.interp(p, self.iso_x, self.iso_y)
        return np.clip(p, 0.0, 1.0)

    def score(self, result, presence: Mapping[str, float] | None = None) -> None:
        """Set `confidence` on each candidate of a `CaptionResult` and on the result (its best
        candidate's); cap it when the image has an input warning; add a low-confidence warning.
        `presence`: the photo's support evidence per concept (None: no evidence)."""
        cands = result.candidates
        if not cands:
            return
        x = np.array([candidate_features(cands, i, result.tags, presence) for i in range(len(cands))])
        probs = self.probability(x)
        if result.warnings:
            probs = np.minimum(probs, WARNING_CAP)
        for c, p in zip(cands, probs):
            c.confidence = float(p) if math.isfinite(p) else None
        result.confidence = cands[0].confidence
        if result.confidence is not None and result.confidence < self.low and not result.warnings:
            result.warnings.append(f"low confidence ({result.confidence:.2f}): the caption may be wrong")
