"""The library's speed targets (find by description, more like this, bulk import), with the targets printed
beside the figures.

    python -m benchmarks.bench_library            # find over 10,000 and 100,000 items, more like this, import 200 photos
    python -m benchmarks.bench_library --quick    # find over 10,000, more like this over 10,000, import 64 photos

Time: the first run builds the benchmark galleries under --work (10,000 items: 15-60 s; 100,000 items:
12.5 GB of disk, 11 minutes at load 7, a few minutes idle); later runs reuse them and take 1-3 minutes
(--quick: about 1 minute). Delete --work afterwards to get the disk back.
    python -m benchmarks.bench_library --sections similar --sqlite-vec   # the sqlite-vec comparison (slow: minutes)

**The galleries are made of repeated Flickr8k items.** Each benchmark gallery of N items holds the 2,000
Flickr8k validation and test photos' real encoder grids (float16), captions and beam candidates, cycled
(item i is photo i mod 2,000; file names differ), written straight into SQLite with the full-text
triggers: a real schema at real size (100,000 items: 12.5 GB of grids), so reading, scanning and scoring
cost what they would, but the content repeats, so these runs measure time, never recall (recall:
scripts/eval_retrieval.py). Grids come from runs/retrieval-eval/{val,test}.npz (scripts/eval_retrieval.py
makes them). The gallery is built under --work (kept between runs and reused: building 100,000 items
takes a few minutes and 12.5 GB of disk; delete it afterwards) and its pooled-vector cache is written
from the same grids, so only the query is timed.

1. **find**: `captioner.retrieval.find` with the shipped `FindConfig`, the index loaded (as in the
   studio, or `captioner find --queries`), median over --find-runs queries, split into its parts
   (full text, first stage + shortlist, reading the grids, likelihood scoring, results); and the cold
   start of a `captioner find` call (reading the index: ids from SQLite, pooled vectors from the cache).
2. **similar**: `captioner.retrieval.similar` (more like this) on the same gallery, median over --runs items.
   With --sqlite-vec also the earlier comparison: numpy / torch float16 scans against sqlite-vec
   (synthetic noisy copies of the real pooled vectors).
3. **import**: `import_folders` (what `captioner gallery add` runs) on --import-photos Flickr8k training
   photos into a new gallery, beside `Captioner.caption_many` on the same photos (the plain caption
   command's engine, same batch size): their ratio tells what the import adds, whatever the load.

Timings are noisy on a shared machine: the load average is printed with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tests.oracles.photos import FLICKR as FLICKR8K

from benchmarks._stats import load_average
from captioner.retrieval.evaluation import PhotoSet
from captioner.retrieval.index import pool
from captioner.retrieval.more_like_this import nearest

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["a dog catching a frisbee", "kids playing at the beach", "a man riding a bike on a dirt road",
           "two women sitting on a bench", "a climber on a rock wall", "a brown dog swimming",
           "people walking down a busy city street", "a boy jumping into a pool", "a little girl in a pink dress",
           "a skier going down a snowy hill", "two dogs playing in the grass", "a crowd watching a concert"]
TARGETS = {"find 10000": 1.0, "find 100000": 5.0, "similar 100000": 0.1, "import": 15.0}


def load() -> str:
    return f"load {load_average()[0]:.1f}"


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


# ---------------------------------------------------------------------------------------------- galleries
def build_gallery(folder: Path, n: int, sets: list[PhotoSet], model_name: str):
    """A gallery of n items: the photo sets' real grids and captions cycled, rows inserted straight into
    SQLite (one transaction), and its pooled-vector cache written from the same grids. Reused when
    `folder` already holds a finished one of n items."""
    import captioner.storage.files as gallery_files
    from captioner.retrieval.config import FindConfig
    from captioner.retrieval.index import PhotoIndex, _write_cache, cache_path
    from captioner.storage import Gallery
    from captioner.storage.schema import FEATURES_TABLE

    done = folder / "bench-complete.json"
    if done.is_file() and json.loads(done.read_text()) == {"items": n, "model": model_name}:
        return Gallery(folder)
    if folder.exists():
        shutil.rmtree(folder)
    from tests.oracles.photos import tiny_png_bytes

    g = Gallery(folder)
    encoded = gallery_files.encode_image(tiny_png_bytes(), "tiny.png")
    digest, rel = g._image_file(encoded)
    g._write_image(encoded, rel)
    grids = np.concatenate([s.grids for s in sets])
    cands = [c for s in sets for c in s.candidates]
    blobs = [np.ascontiguousarray(grid.astype("<f2")).tobytes() for grid in grids]
    shape = ",".join(map(str, grids.shape[1:]))
    t = time.perf_counter()
    with g._write() as db:
        for i in range(n):
            k = i % len(grids)
            item_id = db.conn.execute(
                "INSERT INTO items (image_hash, image_file, original_name, width, height, caption, alternatives,"
                " candidates, beam_size, model_name, saved_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (digest, rel, f"IMG_{i:06d}.jpg", 4, 4, cands[k][0], "\n".join(cands[k][1:]),
                 json.dumps([{"caption": c} for c in cands[k]]), 5, model_name,
                 "2024-01-01T00:00:00+00:00")).lastrowid
            db.conn.execute(f"INSERT INTO {FEATURES_TABLE} (item_id, model_name, dtype, shape, grid) "
                            "VALUES (?,?,?,?,?)", (item_id, model_name, "float16", shape, blobs[k]))
            if i and i % 20000 == 0:
                print(f"  building the {n:,}-item gallery: {i:,} ({time.perf_counter() - t:.0f} s)", flush=True)
    pooled = pool(grids)
    rows = np.arange(n) % len(grids)
    _write_cache(cache_path(g, model_name), PhotoIndex(np.arange(1, n + 1), pooled[rows],
                                                       np.full(n, np.nan, np.float32)), FindConfig().generic_captions)
    done.write_text(json.dumps({"items": n, "model": model_name}))
    return g


# ---------------------------------------------------------------------------------------------- find
def bench_find(captioner, sets, n: int, runs: int, work: Path, shortlist: int | None = None) -> dict:
    from captioner.retrieval.config import FindConfig
    from captioner.retrieval.index import photo_index
    from captioner.retrieval.search import find
    from captioner.storage import Gallery

    t = time.perf_counter()
    build_gallery(work / f"gallery-{n}", n, sets, captioner.name).close()
    build_s = time.perf_counter() - t
    g = Gallery(work / f"gallery-{n}")
    t = time.perf_counter()
    index = photo_index(g, captioner, priors=False)  # what a `captioner find` call does first
    cold_index_s = time.perf_counter() - t
    assert len(index) == n, (len(index), n)
    cfg = FindConfig() if shortlist is None else FindConfig(shortlist=shortlist)
    find(g, captioner, QUERIES[-1], 10, cfg, index=index)  # warm-up (first-stage projection, scorer)
    totals, cpu, parts = [], [], {}
    for q in (QUERIES * 2)[:runs]:
        timings: dict = {}
        t, c = time.perf_counter(), time.process_time()
        found = find(g, captioner, q, 10, cfg, index=index, timings=timings)
        totals.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        for k, v in timings.items():
            parts.setdefault(k, []).append(v)
    res = {"items": n, "build_or_reuse_s": round(build_s, 1), "scored_per_query": found.scored,
           "query_median_s": round(statistics.median(totals), 3), "query_max_s": round(max(totals), 3),
           # CPU seconds (all threads): less sensitive to other jobs than wall time; idle wall is about this / cores
           "query_cpu_median_s": round(statistics.median(cpu), 3),
           "parts_median_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in parts.items()},
           "cold_index_load_s": round(cold_index_s, 2), "load": load()}
    g.close()
    print(f"find over {n:,} items: {res}", flush=True)
    return res


def bench_similar_gallery(n: int, runs: int, work: Path, model_name: str) -> dict:
    from captioner.retrieval.index import pooled_index
    from captioner.retrieval.more_like_this import similar
    from captioner.storage import Gallery

    g = Gallery(work / f"gallery-{n}")
    index = pooled_index(g, model_name)
    probes = [int(i) for i in np.random.default_rng(1).integers(1, n + 1, runs + 1)]
    it = iter(probes)
    ms = median_ms(lambda: similar(g, next(it), 10, index=index), runs)
    g.close()
    res = {"items": n, "similar_median_ms": round(ms, 1), "load": load()}
    print(f"more like this over {n:,} items: {res}", flush=True)
    return res


# ---------------------------------------------------------------------------------------------- similar (sqlite-vec)
def vectors(n: int, base: np.ndarray, seed: int = 0) -> np.ndarray:
    """n unit vectors: the real pooled vectors, then noisy copies of them (a realistic spread)."""
    rng = np.random.default_rng(seed)
    reps = -(-n // len(base))
    out = np.concatenate([base + (0 if r == 0 else 0.3 * rng.standard_normal(base.shape).astype(np.float32)
                                  * base.std()) for r in range(reps)])[:n].astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def similar_vs_sqlite_vec(base: np.ndarray, n: int, runs: int) -> dict:
    import apsw
    import sqlite_vec

    vecs = vectors(n, base)
    dim = vecs.shape[1]
    probes = [int(i) for i in np.random.default_rng(1).integers(0, n, runs)]
    it = iter(probes * 2)
    numpy_ms = median_ms(lambda: nearest(vecs, vecs[next(it)], 10), runs - 1)
    t16 = torch.from_numpy(vecs.astype(np.float16))
    it = iter(probes * 2)
    torch16_ms = median_ms(lambda: nearest(t16, t16[next(it)], 10), runs - 1)
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

        def knn(i):
            return [r[0] - 1 for r in db.execute(
                "SELECT rowid FROM v WHERE embedding MATCH ? AND k = 10 ORDER BY distance", (vecs[i].tobytes(),))]

        it = iter(probes * 2)
        vec_ms = median_ms(lambda: knn(next(it)), runs - 1)
        same = np.mean([set(knn(i)) == set(nearest(vecs, vecs[i], 10)[0].tolist()) for i in probes[:10]])
        db.close()
    res = {"items": n, "numpy_float32_ms": round(numpy_ms, 2), "torch_float16_ms": round(torch16_ms, 2),
           "sqlite_vec_knn_ms": round(vec_ms, 2), "sqlite_vec_build_s": round(build_s, 1),
           "same_neighbours": float(same), "load": load()}
    print(f"scan vs sqlite-vec: {res}", flush=True)
    return res


# ---------------------------------------------------------------------------------------------- import
def bench_import(captioner, n: int) -> dict:
    from captioner.data.flickr8k import read_flickr8k
    from captioner.inputs.sources import InputItem
    from captioner.retrieval.importer import import_folders
    from captioner.storage import Gallery

    ds = read_flickr8k(FLICKR8K)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        for i in ds.split("train")[:n]:
            shutil.copy(ds.image_path(i), src / i)
        list(captioner.caption_many([InputItem(str(p), str(p)) for p in sorted(src.iterdir())[:8]]))  # warm-up
        g = Gallery(Path(tmp) / "g")
        t = time.perf_counter()
        report = import_folders(g, captioner, [src])
        first = time.perf_counter() - t
        load_import = load()
        t = time.perf_counter()
        again = import_folders(g, captioner, [src])
        second = time.perf_counter() - t
        g.close()
        items = [InputItem(str(p), str(p)) for p in sorted(src.iterdir())]
        t = time.perf_counter()
        list(captioner.caption_many(items, batch_size=8))
        plain = time.perf_counter() - t
    res = {"photos": n, "added": len(report.added), "import_photos_per_s": round(n / first, 1),
           "load_during_import": load_import, "plain_caption_many_photos_per_s": round(n / plain, 1),
           "import_vs_plain": round(plain / first, 2), "second_run_added": len(again.added),
           "second_run_s": round(second, 2), "load": load()}
    print(f"import: {res}", flush=True)
    return res


def summary(out: dict) -> None:
    print("\n| target | measured | load |\n| --- | --- | --- |")
    for res in out.get("find", []):
        key = f"find {res['items']}"
        goal = TARGETS.get(key)
        print(f"| one query over {res['items']:,} items <= {goal if goal else '-'} s | {res['query_median_s']} s median, "
              f"{res['query_max_s']} s worst, {res['query_cpu_median_s']} CPU s ({res['scored_per_query']} photos scored; "
              f"+{res['cold_index_load_s']} s "
              f"index load when cold) | {res['load']} |")
    for res in out.get("similar", []):
        print(f"| more like this over {res['items']:,} items < 100 ms | {res['similar_median_ms']} ms median | "
              f"{res['load']} |")
    if "import" in out:
        res = out["import"]
        print(f"| import >= 15 photos/s | {res['import_photos_per_s']} photos/s ({res['photos']} photos; plain "
              f"captioning {res['plain_caption_many_photos_per_s']} photos/s just after) | {res['load_during_import']} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10,000 items only, 64 photos imported (about 2 minutes)")
    p.add_argument("--sections", nargs="+", default=["find", "similar", "import"], choices=["find", "similar", "import"])
    p.add_argument("--sizes", type=int, nargs="+", help="gallery sizes (default 10000 100000; --quick: 10000)")
    p.add_argument("--find-runs", type=int, default=12)
    p.add_argument("--shortlist", type=int, help="find's shortlist (default: FindConfig's)")
    p.add_argument("--runs", type=int, default=20, help="more-like-this probes")
    p.add_argument("--import-photos", type=int, help="default 200 (--quick: 64)")
    p.add_argument("--sqlite-vec", action="store_true", help="also the scan against sqlite-vec (pip install -e '.[bench]')")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "captioner-bench-library"),
                   help="where the benchmark galleries are kept between runs")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    n_import = args.import_photos or (64 if args.quick else 200)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"{load()} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}", flush=True)
    print("benchmark galleries: repeated Flickr8k items (real grids and captions, cycled): timing only", flush=True)
    from captioner import Captioner

    captioner = Captioner.load()
    out: dict = {}
    sets = photo_sets() if {"find", "similar"} & set(args.sections) else []
    for n in sizes:
        if "find" in args.sections:
            out.setdefault("find", []).append(bench_find(captioner, sets, n, args.find_runs, work, args.shortlist))
        if "similar" in args.sections:
            if "find" not in args.sections:
                build_gallery(work / f"gallery-{n}", n, sets, captioner.name).close()
            out.setdefault("similar", []).append(bench_similar_gallery(n, args.runs, work, captioner.name))
    if args.sqlite_vec:
        base = pool(np.concatenate([s.grids for s in sets]))
        out["sqlite_vec"] = [similar_vs_sqlite_vec(base, n, args.runs) for n in sizes]
    if "import" in args.sections:
        out["import"] = bench_import(captioner, n_import)
    summary(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
