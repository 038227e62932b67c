"""Find-by-description on Flickr8k: recall@5 / recall@10 of the captioner's likelihood ranking (prior-
corrected, fused with full text) against the gallery's full-text search over the model's own captions.

Each photo of a split is the answer to one query: one of its human captions (picked with a fixed
seed). Every query is scored against every photo of the split (1,000 x 1,000 teacher-forced
sequences per split). The work is kept under runs/retrieval-eval/ and resumes where it stopped;
queries are done in a fixed random order, so a partial run measures a random subset.

    nice -n 10 python scripts/eval_retrieval.py --split val --tune     # choose the weights (validation)
    nice -n 10 python scripts/eval_retrieval.py --split test           # the figures (test, chosen weights)
    python scripts/eval_retrieval.py --split test --report-only         # what is done so far

Weights are chosen on the validation photos only; --split test never tunes.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from captioner.atomic_write import atomic_path, write_atomic
from captioner.retrieval.config import FindConfig
from captioner.retrieval.evaluation import (
    cached_photo_set,
    fulltext_rankings,
    rank_of,
    recall_at,
)
from captioner.retrieval.index import pool
from captioner.retrieval.likelihood import Scorer, query_tokens
from captioner.retrieval.prior import GENERIC_CAPTIONS
from captioner.retrieval.search import fulltext_bonus

ROOT = Path(__file__).resolve().parents[1]

PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
GENERIC_COUNTS = (8, 16, 24)  # the shipped FindConfig keeps 8: the prior costs that many sequences per photo
FULLTEXT_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5)
SHORTLISTS = (100, 200, 300, 500)
FIRST_STAGE_SHORTLISTS = (50, 100, 150, 200, 300)
FIRST_STAGE_FULLTEXT = (0, 10, 25, 50, 100)


def split_queries(ds, split: str) -> tuple[list[str], list[int]]:
    """One human caption per photo (seed 0), and the order queries are scored in (seed 1)."""
    ids = ds.split(split)
    rng = random.Random(0)
    queries = [ds.captions[i][rng.randrange(len(ds.captions[i]))] for i in ids]
    order = list(range(len(ids)))
    random.Random(1).shuffle(order)
    return queries, order


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".tmp.npy") as tmp:
        np.save(tmp, array)


class Work:
    """The split's cached pieces under runs/retrieval-eval/<split>-*."""

    def __init__(self, folder: Path, split: str, n: int, prune: tuple[int, int] | None = None):
        self.folder, self.split, self.n = folder, split, n
        folder.mkdir(parents=True, exist_ok=True)
        kind = f"-prune{prune[0]}x{prune[1]}" if prune else ""
        self.ll_path = folder / f"{split}-likelihood{kind}.npy"      # (n queries in order, n photos)
        self.done_path = folder / f"{split}-likelihood{kind}.json"   # {"done": k}
        self.prior_path = folder / f"{split}-generic.npy"      # (len(GENERIC_CAPTIONS), n photos)
        self.fts_path = folder / f"{split}-fulltext.json"

    def likelihood(self) -> tuple[np.ndarray, int]:
        if self.ll_path.is_file() and self.done_path.is_file():
            return np.load(self.ll_path), json.loads(self.done_path.read_text())["done"]
        return np.full((self.n, self.n), np.nan, np.float32), 0

    def save_likelihood(self, ll: np.ndarray, done: int) -> None:
        save_npy(self.ll_path, ll)
        write_atomic(self.done_path, json.dumps({"done": done}))


def compute(args, ds, work: Work, queries, order) -> None:
    from captioner import Captioner

    captioner = Captioner.load()
    vocab = captioner.model.vocab
    paths = [ds.image_path(i) for i in ds.split(args.split)]
    t0 = time.time()
    photo_set = cached_photo_set(captioner, paths, work.folder / f"{args.split}.npz",
                                 progress=lambda d, n: print(f"captioned {d}/{n} photos", file=sys.stderr)
                                 if d % 100 < 16 else None)
    print(f"photo set ready ({time.time() - t0:.0f} s)", file=sys.stderr)
    if not work.fts_path.is_file():
        t = time.time()
        ranked = fulltext_rankings(photo_set, queries, top=100)
        work.fts_path.write_text(json.dumps(ranked))
        print(f"full-text rankings done ({time.time() - t:.0f} s)", file=sys.stderr)
    scorer = Scorer(captioner.model.decoder)
    photos = scorer.photos(photo_set.grids)
    # every generic caption when tuning; else as many as the chosen FindConfig uses
    needed = len(GENERIC_CAPTIONS) if args.tune else FindConfig().generic_captions
    generic = np.load(work.prior_path) if work.prior_path.is_file() else np.zeros((0, len(photos)), np.float32)
    if len(generic) < needed:
        t = time.time()
        more = [scorer.text_likelihood(photos, query_tokens(vocab, g)) for g in GENERIC_CAPTIONS[len(generic):needed]]
        save_npy(work.prior_path, np.concatenate([generic, np.stack(more)]))
        print(f"priors done ({time.time() - t:.0f} s)", file=sys.stderr)
    ll, done = work.likelihood()
    limit = len(order) if args.queries is None else min(len(order), args.queries)
    deadline = time.time() + args.time_limit if args.time_limit else None
    t = time.time()
    start = done
    while done < limit and (deadline is None or time.time() < deadline):
        q = order[done]
        ll[done] = scorer.text_likelihood(photos, query_tokens(vocab, queries[q]), prune=args.prune)
        done += 1
        if done % 10 == 0 or done == limit:
            work.save_likelihood(ll, done)
            rate = (time.time() - t) / (done - start)
            print(f"{done}/{len(order)} queries scored ({rate:.2f} s per query over {len(photos)} photos)",
                  file=sys.stderr, flush=True)
    work.save_likelihood(ll, done)


def evaluate(ll_rows, generic, fts, order, pooled, prior_weight, n_generic, fulltext_weight, shortlist=None,
             cheap=None, shortlist_fulltext=None):
    """Ranks (0-based) of each scored query's photo under one setting; None when shortlisting dropped it.
    `cheap`: each query's first-stage scores (the shortlist as `find` makes it with the first stage)."""
    prior = generic[:n_generic].mean(axis=0)
    ranks = []
    for k, row in enumerate(ll_rows):
        target = order[k]
        hits = fts[target]
        score = row - prior_weight * prior
        for r, photo in enumerate(hits):
            score[photo] += fulltext_weight * fulltext_bonus(r)
        if shortlist is not None:
            # as find() does it: without a prior weight the priors are not computed (the filler is id order)
            keep = shortlist_rows(pooled, prior if prior_weight else np.zeros_like(prior), hits, shortlist,
                                  None if cheap is None else cheap[target], shortlist_fulltext)
            if target not in set(keep.tolist()):
                ranks.append(None)
                continue
            masked = np.full_like(score, -np.inf)
            masked[keep] = score[keep]
            score = masked
        ranks.append(rank_of(score, target))
    return ranks


def shortlist_rows(pooled, prior, hits, size, cheap=None, shortlist_fulltext=None):
    from captioner.retrieval.index import PhotoIndex
    from captioner.retrieval.search import shortlist

    index = PhotoIndex(np.arange(len(pooled)), pooled, prior)
    return shortlist(index, list(hits), size, cheap, shortlist_fulltext if cheap is not None else None)


def first_stage_matrix(queries, pooled) -> np.ndarray | None:
    """(n queries, n photos) first-stage scores with the shipped projection (None: there is none)."""
    from captioner.model.folder import default_model_dir
    from captioner.model.vocab import Vocab
    from captioner.retrieval.first_stage import FILE_NAME, QueryProjection

    folder = default_model_dir()
    vocab = Vocab.load(folder / "vocab.json")
    projection = QueryProjection.load(folder / FILE_NAME, vocab_size=len(vocab), feature_dim=pooled.shape[1])
    if projection is None:
        return None
    return np.stack([projection.scores(projection.query_vector(vocab, q), pooled) for q in queries])


def report(args, work: Work, queries, order, photo_set=None) -> dict:
    ll, done = work.likelihood()
    if not done:
        print("no query scored yet", file=sys.stderr)
        return {}
    generic = np.load(work.prior_path)
    fts = json.loads(work.fts_path.read_text())
    rows = ll[:done]
    from captioner.retrieval.evaluation import PhotoSet

    photo_set = photo_set or PhotoSet.load(work.folder / f"{args.split}.npz")
    pooled = pool(photo_set.grids)
    fts_ranks = [fts[q].index(q) if q in fts[q] else None for q in order[:done]]
    out = {"split": args.split, "queries": done, "photos": work.n, "prune": list(args.prune or []),
           "fulltext": {"recall@5": recall_at(fts_ranks, 5), "recall@10": recall_at(fts_ranks, 10)}}

    def recalls(ranks):
        mrr = float(np.mean([0.0 if r is None else 1.0 / (r + 1) for r in ranks]))
        return {"recall@5": recall_at(ranks, 5), "recall@10": recall_at(ranks, 10), "mrr": round(mrr, 4)}

    out["likelihood_raw"] = recalls(evaluate(rows, generic, fts, order, pooled, 0.0, 8, 0.0))
    if args.tune:
        grid = []
        for pw, ng, fw in itertools.product(PRIOR_WEIGHTS, [g for g in GENERIC_COUNTS if g <= len(generic)],
                                            FULLTEXT_WEIGHTS):
            r = recalls(evaluate(rows, generic, fts, order, pooled, pw, ng, fw))
            grid.append({"prior_weight": pw, "generic_captions": ng, "fulltext_weight": fw, **r})
        # chosen among 8 generic captions: each one costs a decoder pass per photo when it is indexed
        best = max((g for g in grid if g["generic_captions"] == 8),
                   key=lambda g: (g["recall@5"], g["recall@10"], g["mrr"]))
        out["grid"] = grid
        out["chosen"] = best
        pw, ng, fw = best["prior_weight"], best["generic_captions"], best["fulltext_weight"]
    else:
        cfg = FindConfig()
        pw, ng, fw = cfg.prior_weight, cfg.generic_captions, cfg.fulltext_weight
        if ng > len(generic):
            raise SystemExit(f"only {len(generic)} generic captions scored; run without --report-only first")
    out["settings"] = {"prior_weight": pw, "generic_captions": ng, "fulltext_weight": fw}
    out["likelihood_prior"] = recalls(evaluate(rows, generic, fts, order, pooled, pw, ng, 0.0))
    out["fused"] = recalls(evaluate(rows, generic, fts, order, pooled, pw, ng, fw))
    out["shortlisted"] = {str(s): recalls(evaluate(rows, generic, fts, order, pooled, pw, ng, fw, s))
                          for s in SHORTLISTS}
    cheap = first_stage_matrix(queries, pooled)
    if cheap is not None:
        cfg = FindConfig()
        alone = [int((cheap[q] > cheap[q, q]).sum()) for q in range(len(queries))]  # every query of the split
        out["first_stage_alone"] = {f"recall@{k}": recall_at(alone, k) for k in (5, 10, 50, 100, 150, 300)}
        out["first_stage_alone"]["queries"] = len(queries)
        fulltexts = FIRST_STAGE_FULLTEXT if args.tune else (cfg.shortlist_fulltext,)
        out["first_stage_shortlisted"] = {
            f"{s} ({f} full-text)": recalls(evaluate(rows, generic, fts, order, pooled, pw, ng, fw, s, cheap, f))
            for s in FIRST_STAGE_SHORTLISTS for f in fulltexts}
        out["find_as_shipped"] = {"shortlist": cfg.shortlist, "shortlist_fulltext": cfg.shortlist_fulltext,
                                  "first_stage": cfg.first_stage,
                                  **recalls(evaluate(rows, generic, fts, order, pooled, pw, ng, fw, cfg.shortlist,
                                                     cheap if cfg.first_stage else None, cfg.shortlist_fulltext))}
    full = Work(work.folder, args.split, work.n) if args.prune else None
    if full is not None and full.done_path.is_file():
        full_ll, full_done = full.likelihood()
        common = min(done, full_done)
        if common:
            out["pruning_vs_full"] = {
                "queries": common, "prune": list(args.prune),
                "pruned": recalls(evaluate(rows[:common], generic, fts, order, pooled, pw, ng, fw)),
                "full": recalls(evaluate(full_ll[:common], generic, fts, order, pooled, pw, ng, fw))}
    f5 = out["fulltext"]["recall@5"]
    out["ratio@5"] = out["fused"]["recall@5"] / f5 if f5 else None
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flickr8k"))
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--tune", action="store_true", help="choose the weights (validation split only)")
    p.add_argument("--queries", type=int, help="score at most this many queries in all (default: every photo's)")
    p.add_argument("--time-limit", type=float, help="stop scoring after this many seconds (resume later)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--prune", type=int, nargs=2, metavar=("AFTER", "KEEP"),
                   help="score every photo on the first AFTER words, only the best KEEP to the end "
                        "(default: FindConfig's; 0 0: every photo to the end)")
    p.add_argument("--work", default=str(ROOT / "runs" / "retrieval-eval"))
    p.add_argument("--out", help="write the figures as JSON here too")
    args = p.parse_args(argv)
    if args.tune and args.split != "val":
        p.error("--tune works on the validation split only (--split val)")
    from captioner.data.flickr8k import read_flickr8k

    ds = read_flickr8k(args.data)
    queries, order = split_queries(ds, args.split)
    if args.prune is None:
        cfg = FindConfig()
        args.prune = (cfg.prune_after, cfg.prune_keep)
    args.prune = tuple(args.prune) if args.prune[1] > 0 else None  # 0 0 (the default): every photo to the end
    work = Work(Path(args.work), args.split, len(queries), args.prune)
    if not args.report_only:
        compute(args, ds, work, queries, order)
    out = report(args, work, queries, order)
    summary = {k: v for k, v in out.items() if k != "grid"}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
