"""The confidence calibration of a learned model, refitted from the user's held-out edits where there
are enough of them (else the base model's is kept, and learned.json says why).

Fine-tuning moves the model's own scores (a learned model is surer of the words it learned), so the
base calibration (`confidence.json`, fitted on Flickr8k val for the base model) may no longer say how
often a caption is acceptable. The user's held-out edits say it for their own photos: the check model
(learned without them) captions them, and a caption is *acceptable* in the base calibration's own sense,
its CIDEr-D at least the base's threshold, with the user's caption as the reference (document
frequencies from all of the user's captions).

A few dozen photos cannot refit seven coefficients, so only two numbers are refitted: a slope and a
shift of the base model's logit (Platt recalibration), pulled toward "no change" (`PRIOR`). The refit is
kept only when its leave-one-out Brier score on the held-out photos is lower than the base
calibration's on the same photos; otherwise, and with fewer than `LearnConfig.calibration_min_edits`
held-out edits or too few of either kind, the base calibration is kept, with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from captioner.confidence.calibration import ConfidenceScorer, candidate_features
from captioner.evaluation.cider import CiderD
from captioner.model.vocab import tokenize

#: strength of the pull of (slope, shift) toward (1, 0): a few photos barely move the base calibration
PRIOR = 2.0
#: at least this many acceptable and this many unacceptable held-out captions to refit
MIN_EACH = 3


@dataclass
class Recalibration:
    """The outcome: `scorer` the refitted calibration (None: the base one is kept), `why` in words, and
    the figures on the held-out photos."""

    scorer: ConfidenceScorer | None
    why: str
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"refitted": self.scorer is not None, "why": self.why, **self.figures}


def acceptable(captions: list[str], user: list[str], corpus: list[str], threshold: float) -> np.ndarray:
    """1.0 where a caption's CIDEr-D against the user's caption (document frequencies from `corpus`, all
    of the user's captions) is at least `threshold` (the base calibration's, on CiderD's scale)."""
    scorer = CiderD([[tokenize(c)] for c in corpus])
    return np.array([float(scorer.score(tokenize(c), [tokenize(u)]) >= threshold) for c, u in zip(captions, user)])


def features_of(decoded: list) -> np.ndarray:
    """The calibration features (`ALL_FEATURES`) of each photo's best caption (`heldout.Decoded`)."""
    return np.array([candidate_features(d.candidates, 0, d.tags, d.presence) for d in decoded], dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_platt(z: np.ndarray, y: np.ndarray, prior: float = PRIOR, iters: int = 100) -> tuple[float, float]:
    """(slope, shift) maximising the log-likelihood of sigmoid(slope * z + shift) minus
    prior * ((slope - 1)^2 + shift^2): Newton's method, each step halved until the objective falls (a
    badly calibrated start saturates the sigmoid, where full steps overshoot)."""
    centre = np.array([1.0, 0.0])
    zz = np.c_[z, np.ones(len(z))]

    def loss(w):
        t = zz @ w
        return float(np.sum(y * np.logaddexp(0, -t) + (1 - y) * np.logaddexp(0, t)) + prior * np.sum((w - centre) ** 2))

    w = centre.copy()
    f = loss(w)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(zz @ w, -30, 30)))
        grad = zz.T @ (p - y) + 2 * prior * (w - centre)
        hess = zz.T @ (zz * (p * (1 - p))[:, None]) + 2 * prior * np.eye(2)
        step = np.linalg.solve(hess, grad)
        for _ in range(40):
            if loss(w - step) <= f:
                break
            step = step / 2
        w = w - step
        f_new = loss(w)
        if f - f_new < 1e-10:
            break
        f = f_new
    return float(w[0]), float(w[1])


def _platt(z: np.ndarray, slope: float, shift: float) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(slope * z + shift, -30, 30)))


def recalibrate(base: ConfidenceScorer | None, decoded: list, user: list[str], corpus: list[str],
                min_edits: int) -> Recalibration:
    """Refit `base` (the base model's calibration) on the check model's held-out captions `decoded`
    (`heldout.Decoded`) and the user's captions `user` of the same photos; `corpus`: all of the user's
    captions. See the module docstring for when the base calibration is kept."""
    n = len(decoded)
    if base is None:
        return Recalibration(None, "the base model has no confidence calibration")
    threshold = base.about.get("threshold")
    if threshold is None:
        return Recalibration(None, "the base calibration does not record its acceptable-caption threshold")
    if n < min_edits:
        return Recalibration(None, f"only {n} held-out edits; a refit needs at least {min_edits} "
                                   "(--calibration-min-edits)", {"held_out_edits": n})
    y = acceptable([d.caption for d in decoded], user, corpus, float(threshold))
    x = features_of(decoded)
    p_base = base.probability(x)
    brier_base = float(np.mean((p_base - y) ** 2))
    figures = {"held_out_edits": n, "acceptable_share": round(float(y.mean()), 3),
               "base_mean_confidence": round(float(p_base.mean()), 3), "base_brier": round(brier_base, 4)}
    if min(y.sum(), n - y.sum()) < MIN_EACH:
        return Recalibration(None, f"{int(y.sum())} of the {n} held-out captions are acceptable: too few of one "
                                   f"kind (at least {MIN_EACH} of each) to refit", figures)
    z = _logit(base.raw(x))
    loo = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        loo[i] = _platt(z[i : i + 1], *fit_platt(z[keep], y[keep]))[0]
    brier_refit = float(np.mean((loo - y) ** 2))
    slope, shift = fit_platt(z, y)
    figures.update({"refit_brier_leave_one_out": round(brier_refit, 4), "slope": round(slope, 4),
                    "shift": round(shift, 4)})
    if brier_refit >= brier_base:
        return Recalibration(None, f"the refit did not predict the held-out captions better (leave-one-out Brier "
                                   f"{brier_refit:.4f} vs the base calibration's {brier_base:.4f})", figures)
    scorer = ConfidenceScorer(
        list(base.mean), list(base.scale), [slope * c for c in base.coef], slope * base.intercept + shift,
        [], [], base.low, tuple(base.features),
        {"fitted_on": f"{n} of the user's held-out edits (the check model's captions), as a slope and shift of "
                      "the base calibration's logit", "acceptable": f"CIDEr-D against the user's caption >= "
                                                                    f"{float(threshold):.4f}",
         "threshold": float(threshold), "low": base.low, "slope": slope, "shift": shift, "base": base.about,
         "made_by": "captioner learn (captioner.learning.calibration)"})
    mean_after = float(scorer.probability(x).mean())
    figures["refit_mean_confidence"] = round(mean_after, 3)
    return Recalibration(scorer, f"refitted on {n} held-out edits (leave-one-out Brier {brier_refit:.4f} vs the "
                                 f"base calibration's {brier_base:.4f})", figures)
