"""Fit the word-presence head: for each object concept of `captioner.evaluation.hallucination`,
a logistic regression on the photo's pooled encoder features (the mean of the 7 x 7 grid, 1280 values)
that predicts whether the photo's captions name the concept. Trained on the Flickr8k **train** split
with labels from its 5 captions (a concept is present when at least one caption names it or a synonym);
so the head learns, e.g., when a photo has no person in it, which the ImageNet classifier has no class
for. Saved as `support_head.safetensors` in the model folder (`captioner.support`).

    python scripts/fit_support_head.py            # encode train once (cached), fit, report val AUC, save
    python scripts/fit_support_head.py --no-save
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import eval_cache as data
import numpy as np

from captioner.evaluation.hallucination import named_concepts

CACHE = data.ROOT / "runs" / "hallucination"
WEIGHTS = data.ROOT / "src" / "captioner" / "weights"
MIN_POSITIVES = 40  # concepts named for fewer train photos get no head


def pooled(name: str, cap=None, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """(ids, (n, C) pooled grids) of `train` (encoded here, cached and resumed in chunks, in a fixed
    random order so that a partial cache is a random sample; `limit`: stop after that many) or of a
    set `eval_cache` caches."""
    if name != "train":
        ids, grids = data.grids(name, cap)
        return ids, np.asarray(grids).mean(axis=(1, 2)).astype(np.float32)
    from captioner.data import load_dataset

    ds = load_dataset(data.SHARED / "flickr8k")
    ids = list(ds.split("train"))
    ids = [ids[i] for i in np.random.default_rng(0).permutation(len(ids))]
    CACHE.mkdir(parents=True, exist_ok=True)
    chunks = sorted(CACHE.glob("train_pooled_*.npy"))
    done = [np.load(c) for c in chunks]
    n = sum(len(c) for c in done)
    want = min(limit or len(ids), len(ids))
    if n < want:
        import torch

        cap = cap or data.captioner()
        for s in range(n, want, 160):
            part = []
            for t in range(s, min(s + 160, want), 16):
                prepared = [cap.prepare(str(ds.image_path(i))) for i in ids[t : min(t + 16, want)]]
                bad = [p.error for p in prepared if p.error]
                if bad:
                    raise SystemExit(bad[0])
                part.append(cap.encode(torch.stack([p.pixels for p in prepared])).float().mean(dim=(1, 2)).numpy())
            arr = np.concatenate(part).astype(np.float32)
            np.save(CACHE / f"train_pooled_{s:05d}.tmp.npy", arr)
            os.replace(CACHE / f"train_pooled_{s:05d}.tmp.npy", CACHE / f"train_pooled_{s:05d}.npy")
            done.append(arr)
            print(f"train: encoded {s + len(arr)}/{want}", file=sys.stderr, flush=True)
    x = np.concatenate(done)[:want]
    return ids[: len(x)], x


def labels(ids: list[str], refs: dict[str, list[str]], names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    named = [set().union(*(named_concepts(r) for r in refs[i])) for i in ids]
    if names is None:
        counts: dict[str, int] = {}
        for s in named:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        names = sorted(c for c, n in counts.items() if n >= MIN_POSITIVES)
    return names, np.array([[c in s for c in names] for s in named], dtype=np.float32)


def fit_heads(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, epochs: int = 300):
    """Multi-label logistic regression (one output per concept) by full-batch L-BFGS in torch,
    on standardised features; returns (weight (K, C), bias (K,)) for the raw features."""
    import torch

    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = torch.from_numpy((x - mean) / scale)
    t = torch.from_numpy(y)
    w = torch.zeros(z.shape[1], t.shape[1], requires_grad=True)
    b = torch.zeros(t.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, t) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_raw = (w.detach().numpy() / scale[:, None]).T  # (K, C)
    b_raw = b.detach().numpy() - (mean / scale) @ w.detach().numpy()
    return w_raw.astype(np.float32), b_raw.astype(np.float32)


def auc(p: np.ndarray, y: np.ndarray) -> float:
    pos = y.sum()
    if pos == 0 or pos == len(y):
        return float("nan")
    ranks = np.empty(len(p))
    ranks[np.argsort(p)] = np.arange(1, len(p) + 1)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--train-limit", type=int, default=None, help="only the first this many train photos "
                    "(a fixed random order; default all 6,000)")
    args = ap.parse_args()
    from captioner.data import load_dataset

    ds = load_dataset(data.SHARED / "flickr8k")
    ids, x = pooled("train", limit=args.train_limit)
    names, y = labels(ids, ds.captions)
    w, b = fit_heads(x, y, args.l2)
    vids, vx = pooled("val")
    _, _, vrefs = data.load_set("val")
    _, vy = labels(vids, vrefs, names)
    p = 1 / (1 + np.exp(-(vx @ w.T + b)))
    report = {c: {"train_share": round(float(y[:, k].mean()), 3), "val_share": round(float(vy[:, k].mean()), 3),
                  "val_auc": round(auc(p[:, k], vy[:, k]), 3)} for k, c in enumerate(names)}
    print(json.dumps(report, indent=0))
    if not args.no_save:
        from captioner.support.head import SupportHead

        SupportHead(names, w, b, about={"made_by": "scripts/fit_support_head.py", "trained_on": "Flickr8k train",
                                        "l2": args.l2, "min_positives": MIN_POSITIVES}).save(WEIGHTS)
        print(f"saved {WEIGHTS / 'support_head.safetensors'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
