"""Choose how find-by-description turns its score into a match strength the user can read, and the
cutoff under which a photo is not shown ("nothing matches well"), on Flickr8k's validation photos only.

For a sample of validation photos, one human caption each (fixed seed) is scored (the shipped model's
mean log-probability per word, what `captioner.retrieval.find` calls the likelihood) against its own
photo (a match) and against other validation photos picked at random (not a match: a few of them fit
the caption anyway, so the figures are on the safe side).  A logistic fit of match / not a match on the
likelihood, with the two kinds weighed equally, gives the strength: strength = 1 / (1 + exp(-(a * lik + b))).
The cutoff is the strength at which the fit's balanced accuracy is best on these pairs.

    python scripts/choose_find_threshold.py [--photos 300] [--others 20] [--grids runs/eval-cache/val]

`--grids`: a folder with the shipped model's encoder grids of the validation photos (`grids.npy`,
`ids.json`, as scripts/eval_cache.py keeps them); without it they are computed here (slow).
Prints the JSON for `FindConfig` (strength_slope, strength_intercept, strength_cutoff) and the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def val_grids(ds, folder: Path | None, captioner) -> tuple[list[str], np.ndarray]:
    if folder is not None and (folder / "grids.npy").is_file():
        return json.loads((folder / "ids.json").read_text()), np.load(folder / "grids.npy", mmap_mode="r")
    from captioner.retrieval.evaluation import cached_photo_set

    ids = list(ds.split("val"))
    photo_set = cached_photo_set(captioner, [ds.image_path(i) for i in ids], None)
    return ids, photo_set.grids


def fit(lik: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """Logistic regression of label on lik, the two classes weighed equally (Newton's method)."""
    w = np.where(label == 1, 0.5 / label.sum(), 0.5 / (1 - label).sum())
    x = np.stack([lik, np.ones_like(lik)], axis=1)
    beta = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ beta)))
        grad = x.T @ (w * (label - p))
        hess = -(x * (w * p * (1 - p))[:, None]).T @ x
        beta -= np.linalg.solve(hess - 1e-9 * np.eye(2), grad)
    return float(beta[0]), float(beta[1])


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """The chance that a match scores above a non-match (ties count half)."""
    pos, neg = score[label == 1], score[label == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("CAPTIONER_DATA", str(ROOT.parent / "shared" / "data"))
                        + "/flickr8k")
    parser.add_argument("--grids", default=str(ROOT / "runs" / "eval-cache" / "val"))
    parser.add_argument("--photos", type=int, default=300, help="validation photos (queries) sampled")
    parser.add_argument("--others", type=int, default=20, help="other photos each query is scored against")
    args = parser.parse_args()

    from captioner.data import load_dataset
    from captioner.pipeline import Captioner
    from captioner.retrieval.likelihood import Scorer, query_tokens

    ds = load_dataset(args.data)
    captioner = Captioner.load()
    names, grids = val_grids(ds, Path(args.grids) if args.grids else None, captioner)
    val = set(ds.split("val"))
    assert set(names) <= val, "the grids must be of validation photos (never test)"
    rng = random.Random(0)
    queries = rng.sample(range(len(names)), min(args.photos, len(names)))
    scorer = Scorer(captioner.model.decoder)
    vocab = captioner.model.vocab
    liks, labels = [], []
    for q in queries:
        caption = rng.choice(ds.captions[names[q]])
        others = rng.sample([i for i in range(len(names)) if i != q], args.others)
        rows = [q, *others]
        ll = scorer.text_likelihood(scorer.photos(np.asarray(grids[rows])),
                                    query_tokens(vocab, caption, captioner.decoding.max_len))
        liks.extend(float(v) for v in ll)
        labels.extend([1] + [0] * len(others))
    lik, label = np.array(liks), np.array(labels, dtype=float)
    a, b = fit(lik, label)
    strength = 1 / (1 + np.exp(-(a * lik + b)))
    best = None
    for cut in np.round(np.arange(0.05, 0.96, 0.01), 2):
        tpr = float((strength[label == 1] >= cut).mean())
        tnr = float((strength[label == 0] < cut).mean())
        if best is None or (tpr + tnr) / 2 > best[1]:
            best = (float(cut), (tpr + tnr) / 2, tpr, tnr)
    cut, bal, tpr, tnr = best

    print(json.dumps({"strength_slope": round(a, 4), "strength_intercept": round(b, 4), "strength_cutoff": cut}))
    print(f"{len(queries)} validation captions x (own photo + {args.others} others): AUC "
          f"{auc(lik, label):.3f}; cutoff {cut:.2f} keeps {tpr:.1%} of the own photos and drops "
          f"{tnr:.1%} of the others (balanced accuracy {bal:.3f}); likelihood at the cutoff "
          f"{(np.log(cut / (1 - cut)) - b) / a:.3f} nats per word; own photos' median {np.median(lik[label == 1]):.3f}, "
          f"others' {np.median(lik[label == 0]):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
