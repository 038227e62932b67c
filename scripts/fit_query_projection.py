"""Fit find-by-description's first stage: a linear map from a description's words to the pooled encoder
features of the photo it describes (ridge regression on Flickr8k's TRAIN captions and photos only).

    nice -n 10 python scripts/fit_query_projection.py              # encodes the train photos once (cached), fits, saves
    python scripts/fit_query_projection.py --evaluate-only          # first-stage recall on the validation photos

The map is saved as src/captioner/weights/query_projection.safetensors (float16, low rank: `words`
(vocab x rank) and `basis` (rank x C)); `captioner.retrieval.first_stage` ranks every gallery photo by the
dot product of the mapped query with its unit pooled vector. Refit it whenever the encoder or the
vocabulary changes (the file records the vocabulary size and feature width, and is ignored when they
do not match the loaded model).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from captioner.atomic_write import atomic_path
from captioner.retrieval.index import pool

ROOT = Path(__file__).resolve().parents[1]


def train_pooled(captioner, ds, cache: Path, limit: int | None, batch: int = 32) -> tuple[list[str], np.ndarray]:
    ids = ds.split("train")[:limit] if limit else ds.split("train")
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            names = json.loads(str(data["names"]))
            if names == ids:
                return ids, data["pooled"]
    out = []
    t = time.time()
    for s in range(0, len(ids), batch):
        prepared = [captioner.prepare(str(ds.image_path(i))) for i in ids[s : s + batch]]
        feats = captioner.encode(torch.stack([p.pixels for p in prepared]))
        out.append(pool(feats.flatten(1, 2).numpy()))
        if (s // batch) % 20 == 0:
            print(f"encoded {s + len(prepared)}/{len(ids)} train photos ({time.time() - t:.0f} s)", file=sys.stderr)
    pooled = np.concatenate(out).astype(np.float32)
    with atomic_path(cache, suffix=".tmp.npz") as tmp:
        np.savez(tmp, names=np.array(json.dumps(ids)), pooled=pooled)
    return ids, pooled


def fit(x_rows, vocab_size: int, targets: np.ndarray, l2: float, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression words -> centred targets, then truncated to `rank` (SVD of the weight matrix)."""
    from captioner.retrieval.first_stage import bag_of_words

    x = np.stack([bag_of_words(r, vocab_size) for r in x_rows])
    y = targets - targets.mean(axis=0)
    xt = torch.from_numpy(x).double()
    gram = xt.T @ xt + l2 * torch.eye(vocab_size, dtype=torch.float64)
    w = torch.linalg.solve(gram, xt.T @ torch.from_numpy(y).double())  # (V, C)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    words = (u[:, :rank] * s[:rank]).float().numpy()
    basis = vh[:rank].float().numpy()
    return words, basis


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flickr8k"))
    p.add_argument("--model", default=None, help="the model folder (default: the shipped weights)")
    p.add_argument("--train-photos", type=int, default=None, help="use only the first N train photos")
    p.add_argument("--l2", type=float, nargs="+", default=[10.0], help="ridge strength(s); several: chosen on val")
    p.add_argument("--rank", type=int, nargs="+", default=[128], help="rank(s) kept; several: chosen on val")
    p.add_argument("--work", default=str(ROOT / "runs" / "retrieval-eval"))
    p.add_argument("--out", default=None, help="where to save (default: the model folder's query_projection.safetensors)")
    p.add_argument("--evaluate-only", action="store_true")
    args = p.parse_args(argv)
    from captioner import Captioner
    from captioner.data.flickr8k import read_flickr8k
    from captioner.retrieval.evaluation import PhotoSet
    from captioner.retrieval.first_stage import QueryProjection, save_projection

    ds = read_flickr8k(args.data)
    captioner = Captioner.load(args.model)
    vocab = captioner.model.vocab
    work = Path(args.work)
    from captioner.model.folder import default_model_dir
    from captioner.retrieval.first_stage import FILE_NAME

    out = Path(args.out) if args.out else Path(args.model or default_model_dir()) / FILE_NAME
    val = PhotoSet.load(work / "val.npz")  # made by scripts/eval_retrieval.py --split val
    val_pooled = pool(val.grids)
    from eval_retrieval import split_queries  # this script's neighbour (python puts scripts/ on the path)

    queries, _ = split_queries(ds, "val")

    def val_recall(proj, distractors=None) -> dict:
        """Rank of each validation query's photo among the 1,000 validation photos (plus `distractors`)."""
        ranks = []
        for target, q in enumerate(queries):
            vector = proj.query_vector(vocab, q)
            scores = proj.scores(vector, val_pooled)
            rank = int((scores > scores[target]).sum())
            if distractors is not None:
                rank += int((proj.scores(vector, distractors) > scores[target]).sum())
            ranks.append(rank)
        ranks = np.array(ranks)
        return {f"first-stage recall@{k}": round(float((ranks < k).mean()), 3) for k in (5, 10, 50, 100, 150, 200, 300)}

    if args.evaluate_only:
        proj = QueryProjection.load(out, vocab_size=len(vocab.itos), feature_dim=val_pooled.shape[1])
        if proj is None:
            raise SystemExit(f"{out}: no projection for this model; fit one first")
        report = {"val photos": 1000, **val_recall(proj)}
        cache = work / "train-pooled.npz"
        if cache.is_file():  # a harder, larger gallery: the 6,000 training photos added as distractors
            with np.load(cache, allow_pickle=False) as data:
                train = data["pooled"]
            report["with the train photos as distractors"] = {"photos": 1000 + len(train),
                                                              **val_recall(proj, train)}
        print(json.dumps(report, indent=1))
        return 0
    ids, pooled = train_pooled(captioner, ds, work / "train-pooled.npz", args.train_photos)
    rows, targets = [], []
    for i, photo in enumerate(ids):
        for caption in ds.captions[photo]:
            rows.append(vocab.encode(caption)[1:-1])
            targets.append(i)
    targets = pooled[np.array(targets)]
    best = None
    for l2 in args.l2:
        for rank in args.rank:
            words, basis = fit(rows, len(vocab.itos), targets, l2, rank)
            proj = QueryProjection(words, basis, captioner.name)
            r = val_recall(proj)
            print(json.dumps({"l2": l2, "rank": rank, **r}), flush=True)
            key = (r["first-stage recall@100"], r["first-stage recall@10"])
            if best is None or key > best[0]:
                best = (key, l2, rank, proj)
    _, l2, rank, proj = best
    save_projection(out, proj, {"l2": str(l2), "rank": str(rank), "train_photos": str(len(ids)),
                                "fitted_on": "Flickr8k train captions (5 per photo) and photos"})
    print(f"saved {out} (l2 {l2}, rank {rank}, {out.stat().st_size / 2**20:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
