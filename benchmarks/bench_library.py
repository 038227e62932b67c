"""Benchmark find-by-description and more-like-this.

    python benchmarks/bench_retrieval.py                       # everything below
    python benchmarks/bench_retrieval.py --sections similar    # just the vector search comparison

1. **similar**: more like this over 10,000 and 100,000 items: a scan of the unit-length pooled vectors
   (one matrix-vector product + argpartition; numpy float32, and torch float16 as `similar()` does it)
   against sqlite-vec (`vec0` virtual table,
   cosine, k nearest; in an SQLite file, through apsw since this Python's sqlite3 cannot load
   extensions), and sqlite-vec's brute-force `vec_distance_cosine` scan. Median of --runs queries,
   the build/load time, and whether both give the same neighbours.
2. **find**: one query's latency (`captioner.retrieval.find`) over real galleries of 1,000 and 10,000
   items (rows inserted straight into SQLite with real Flickr8k grids, captions and the FTS triggers),
   split into full text, reading the grids, and likelihood scoring, at the default shortlist and with
   every photo scored.
3. **import**: `import_folders` throughput (photos/s) on --import-photos Flickr8k photos.

Vectors and grids come from runs/retrieval-eval/{val,test}.npz (scripts/eval_retrieval.py makes
them) when present, else from encoding Flickr8k photos here. Timings are noisy on a shared machine:
the script prints the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from captioner.retrieval.evaluation import PhotoSet  # noqa: E402
from captioner.retrieval.index import pool  # noqa: E402
from captioner.retrieval.more_like_this import nearest  # noqa: E402

FLICKR8K = ROOT.parent / "shared" / "data" / "flickr8k"
QUERIES = ["a dog catching a frisbee", "kids playing at the beach", "a man riding a bike on a dirt road",
           "two women sitting on a bench", "a climber on a rock wall", "a brown dog swimming",
           "people walking down a busy city street", "a boy jumping into a pool"]


def photo_sets() -> list[PhotoSet]:
    found = [ROOT / "runs" / "retrieval-eval" / f"{s}.npz" for s in ("val", "test")]
    sets = [PhotoSet.load(p) for p in found if p.is_file()]
    if not sets:
        raise SystemExit("run scripts/eval_retrieval.py first (it makes runs/retrieval-eval/{val,test}.npz)")
    return sets


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def vectors(n: int, base: np.ndarray, seed: int = 0) -> np.ndarray:
    """n unit vectors: the real pooled vectors, then noisy copies of them (a realistic spread)."""
    rng = np.random.default_rng(seed)
    reps = -(-n // len(base))
    out = np.concatenate([base + (0 if r == 0 else 0.3 * rng.standard_normal(base.shape).astype(np.float32)
                                  * base.std()) for r in range(reps)])[:n].astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def bench_similar(base: np.ndarray, sizes, runs: int) -> dict:
    out = {}
    for n in sizes:
        out[n] = similar_at(base, n, runs)
        print(f"similar n={n}: {out[n]}", flush=True)
    return out


def similar_at(base: np.ndarray, n: int, runs: int) -> dict:
    import apsw
    import sqlite_vec

    vecs = vectors(n, base)
    dim = vecs.shape[1]
    probes = [int(i) for i in np.random.default_rng(1).integers(0, n, runs)]
    it = iter(probes * 2)
    numpy_ms = median_ms(lambda: nearest(vecs, vecs[next(it)], 10), runs - 1)
    v16 = vecs.astype(np.float16)
    t16 = torch.from_numpy(v16)  # what similar() scans: float16, torch's matrix-vector product
    it = iter(probes * 2)
    torch16_ms = median_ms(lambda: nearest(t16, t16[next(it)], 10), runs - 1)
    same16 = np.mean([set(nearest(t16, t16[i], 10)[0].tolist()) == set(nearest(vecs, vecs[i], 10)[0].tolist())
                      for i in probes[:10]])
    with tempfile.TemporaryDirectory() as tmp:
        db = apsw.Connection(os.path.join(tmp, "vec.db"))
        db.enable_load_extension(True)
        db.load_extension(sqlite_vec.loadable_path())
        t = time.perf_counter()
        db.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{dim}] distance_metric=cosine)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)", ((i + 1, vecs[i].tobytes()) for i in range(n)))
        db.execute("COMMIT")
        build_s = time.perf_counter() - t
        db.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, embedding BLOB)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO plain VALUES (?, ?)", ((i + 1, vecs[i].tobytes()) for i in range(n)))
        db.execute("COMMIT")

        def knn(i):
            return [r[0] - 1 for r in db.execute(
                "SELECT rowid FROM v WHERE embedding MATCH ? AND k = 10 ORDER BY distance", (vecs[i].tobytes(),))]

        def brute(i):
            return [r[0] - 1 for r in db.execute(
                "SELECT id FROM plain ORDER BY vec_distance_cosine(embedding, ?) LIMIT 10", (vecs[i].tobytes(),))]

        it = iter(probes * 2)
        vec_ms = median_ms(lambda: knn(next(it)), runs - 1)
        it = iter(probes * 2)
        brute_ms = median_ms(lambda: brute(next(it)), max(3, runs // 4))
        same = np.mean([set(knn(i)) == set(nearest(vecs, vecs[i], 10)[0].tolist()) for i in probes[:10]])
        db.close()
    with tempfile.TemporaryDirectory() as tmp:  # a CLI call starts cold: reading the float16 cache
        path = os.path.join(tmp, "pooled.npy")
        np.save(path, v16)
        load_ms = median_ms(lambda: np.load(path).astype(np.float32), 3)
    return {"numpy_float32_ms": round(numpy_ms, 2), "torch_float16_ms (similar())": round(torch16_ms, 2),
            "float16_same_top10_as_float32": float(same16),
            "sqlite_vec_knn_ms": round(vec_ms, 2), "sqlite_vec_brute_ms": round(brute_ms, 2),
            "sqlite_vec_build_s": round(build_s, 2), "same_neighbours": float(same),
            "load_float16_cache_ms": round(load_ms, 1), "memory_float32_mb": round(vecs.nbytes / 2**20)}


def build_gallery(folder: Path, n: int, sets: list[PhotoSet], model_name: str):
    """A gallery of n items: real grids and captions cycled, rows inserted straight into SQLite."""
    import captioner.storage.gallery as gallery_mod
    from captioner.storage import Gallery
    from captioner.storage.schema import FEATURES_TABLE

    sys.path.insert(0, str(ROOT / "tests"))
    from oracles.photos import tiny_png_bytes

    g = Gallery(folder)
    encoded = gallery_mod._encode_image(tiny_png_bytes(), "tiny.png")
    digest, rel = g._image_file(encoded)
    g._write_image(encoded, rel)
    grids = np.concatenate([s.grids for s in sets])
    cands = [c for s in sets for c in s.candidates]
    with g._write() as db:
        for i in range(n):
            k = i % len(grids)
            item_id = db.conn.execute(
                "INSERT INTO items (image_hash, image_file, original_name, width, height, caption, alternatives,"
                " candidates, beam_size, model_name, saved_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (digest, rel, f"IMG_{i:06d}.jpg", 4, 4, cands[k][0], "\n".join(cands[k][1:]),
                 json.dumps([{"caption": c} for c in cands[k]]), 5, model_name,
                 "2024-01-01T00:00:00+00:00")).lastrowid
            g_ = np.ascontiguousarray(grids[k].astype("<f2"))
            db.conn.execute(f"INSERT INTO {FEATURES_TABLE} (item_id, model_name, dtype, shape, grid) "
                            "VALUES (?,?,?,?,?)", (item_id, model_name, "float16",
                                                  ",".join(map(str, g_.shape)), g_.tobytes()))
    return g


def known_priors(sets, n):
    """The photos' priors (mean over FindConfig's generic captions) from scripts/eval_retrieval.py's files."""
    from captioner.retrieval.config import FindConfig

    need = FindConfig().generic_captions
    rows = []
    for split in ("val", "test")[: len(sets)]:
        path = ROOT / "runs" / "retrieval-eval" / f"{split}-generic.npy"
        if not path.is_file():
            return None
        generic = np.load(path)
        if len(generic) < need:
            return None
        rows.append(generic[:need].mean(axis=0))
    return np.concatenate(rows).astype(np.float32)


def bench_find(sets, sizes, runs: int) -> dict:
    from captioner import Captioner
    from captioner.retrieval.config import FindConfig
    from captioner.retrieval.index import PhotoIndex, _write_cache, cache_path, photo_index
    from captioner.retrieval.search import find

    captioner = Captioner.load()
    out = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            g = build_gallery(Path(tmp), n, sets, captioner.name)
            build_s = time.perf_counter() - t
            t = time.perf_counter()
            known = known_priors(sets, n)
            if known is not None:  # the eval already scored these grids on the generic captions: no need again
                _write_cache(cache_path(g, captioner.name), PhotoIndex(
                    np.arange(1, n + 1), pool(np.concatenate([s.grids for s in sets]))[np.arange(n) % len(known)],
                    known[np.arange(n) % len(known)]), FindConfig().generic_captions)
            index = photo_index(g, captioner)
            index_s = time.perf_counter() - t
            res = {"build_s": round(build_s, 1), "index_s": round(index_s, 1),
                   "priors": "from runs/retrieval-eval" if known is not None else "computed"}
            for label, cfg in (("default", FindConfig()), ("shortlist 300", FindConfig(shortlist=300)),
                               ("pruned 3/150", FindConfig(prune_after=3, prune_keep=150))):
                if label.startswith("shortlist") and cfg.shortlist >= n:
                    continue
                times = []
                for q in QUERIES[:runs]:
                    t = time.perf_counter()
                    find(g, captioner, q, 10, cfg, index=index)
                    times.append(time.perf_counter() - t)
                res[f"{label} (shortlist {min(cfg.shortlist, n)}) median s"] = round(statistics.median(times), 2)
            t = time.perf_counter()
            photo_index(g, captioner)
            res["index up to date, reload s"] = round(time.perf_counter() - t, 2)
            g.close()
        out[n] = res
        print(f"find n={n}: {res}", flush=True)
    return out


def bench_import(n: int) -> dict:
    from captioner import Captioner
    from captioner.data.flickr8k import read_flickr8k
    from captioner.retrieval.importer import import_folders
    from captioner.storage import Gallery

    ds = read_flickr8k(FLICKR8K)
    captioner = Captioner.load()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        for i in ds.split("train")[:n]:
            shutil.copy(ds.image_path(i), src / i)
        g = Gallery(Path(tmp) / "g")
        t = time.perf_counter()
        report = import_folders(g, captioner, [src])
        first = time.perf_counter() - t
        t = time.perf_counter()
        again = import_folders(g, captioner, [src])
        second = time.perf_counter() - t
        g.close()
    res = {"photos": n, "added": len(report.added), "photos_per_s": round(n / first, 1),
           "second_run_added": len(again.added), "second_run_s": round(second, 2)}
    print(f"import: {res}", flush=True)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=["similar", "find", "import"],
                   choices=["similar", "find", "import"])
    p.add_argument("--similar-sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--find-sizes", type=int, nargs="+", default=[1_000, 10_000])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--find-runs", type=int, default=5)
    p.add_argument("--import-photos", type=int, default=100)
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    out = {}
    sets = photo_sets() if {"similar", "find"} & set(args.sections) else []
    if "similar" in args.sections:
        base = pool(np.concatenate([s.grids for s in sets]))
        out["similar"] = bench_similar(base, args.similar_sizes, args.runs)
    if "find" in args.sections:
        out["find"] = bench_find(sets, args.find_sizes, args.find_runs)
    if "import" in args.sections:
        out["import"] = bench_import(args.import_photos)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
