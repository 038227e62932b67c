"""Benchmark the gallery: search latency at scale and the cost of one save.

    python -m benchmarks.bench_gallery              # 100,000 items
    python -m benchmarks.bench_gallery --items 10000 --saves 100

Builds a gallery in a temporary folder: the bulk rows are inserted directly
(plain SQL, one transaction, all pointing at one tiny shared image, FTS kept
in sync by the real triggers; each row has 1-3 tags, a confidence, one of two
model names, and 2% of them are in the trash), then measures the real
``Gallery.search`` over ~70 varied queries (plain words, AND / OR / NOT,
phrases, irregular forms, prefixes, tags, texts with no searchable word),
searches with filters and sorting, browse pages in each sort, the search
index rebuild that the schema version 4 migration does, and the real
``Gallery.save`` for new 640x480 JPEGs with 3 beam candidates and 14x14
attention maps, split into its parts.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from tests.oracles.photos import noise_photo_bytes, tiny_png_bytes  # the test oracles: photo generators

import captioner.storage.files as gallery_files
from benchmarks._stats import percentile
from captioner.storage import Gallery, GalleryError, migrations, schema

ADJ = ["red", "small", "large", "young", "old", "white", "black", "wooden", "busy", "green",
       "yellow", "brown", "tall", "empty", "crowded", "blue", "striped", "dirty", "shiny", "wet"]
NOUN = ["man", "woman", "dog", "cat", "bus", "train", "plate", "pizza", "table", "street",
        "horse", "bird", "kite", "beach", "skateboard", "surfboard", "giraffe", "elephant",
        "clock", "tower", "kitchen", "sandwich", "bench", "laptop", "umbrella", "boat", "field",
        "child", "frisbee", "bicycle", "motorcycle", "truck", "sheep", "cow", "zebra", "bear",
        "snow", "tennis", "racket", "banana", "broccoli", "toilet", "bathroom", "bed", "couch"]
VERB = ["sitting", "standing", "riding", "holding", "walking", "eating", "playing", "flying",
        "parked", "lying", "looking", "running", "jumping", "carrying", "waiting"]
PREP = ["on", "in", "next to", "near", "under", "with", "at", "behind", "in front of"]

QUERIES = (
    # single common and rare words, stemming
    ["dog", "dogs", "man", "pizza", "giraffe", "umbrella", "riding", "rides", "kitchen", "snow",
     "zebra", "broccoli", "skateboard", "wooden", "crowded", "a", "the", "on", "tennis", "clock"]
    # two and three words
    + ["red bus", "man riding", "dog frisbee", "cat couch", "woman holding umbrella",
       "a man", "giraffe standing", "pizza table", "boat water", "bird flying",
       "young child", "train station", "white plate", "elephant field", "surfboard beach"]
    # prefix searches
    + ["do*", "gir*", "ska*", "el*", "umb*", "b*", "ri*", "pi*"]
    # no hits, odd text
    + ["quixotic", "xylophone zeppelin", '"dog',
       "a very long query about a man riding a red bus next to a crowded street"]
)
#: The search language: operators, phrases, groups, irregular forms, tags.
OPERATOR_QUERIES = [
    "dog AND beach", "dog NOT beach", "dog -beach", "dog OR cat", "(dog OR cat) couch", '"red bus"',
    '"a man riding"', "man NOT woman", "pizza OR sandwich OR banana", "child", "children", "men", "women",
    "people", "ran", "sat", "giraffe AND NOT elephant", "zebra OR giraffe OR elephant OR bear",
]
#: Texts with no searchable word: answered with a GalleryError at once.
NO_WORD_QUERIES = ["NOT AND OR", "(", "-:*", "%", "*", "NOT dog"]


def caption(rng: random.Random) -> str:
    """A COCO-like caption with Zipf-ish word frequencies."""
    def pick(words):
        return words[min(int(rng.paretovariate(1.5)) - 1, len(words) - 1)] if rng.random() < .3 \
            else rng.choice(words)
    return (f"a {pick(ADJ)} {pick(NOUN)} {pick(VERB)} {pick(PREP)} "
            f"a {pick(ADJ)} {pick(NOUN)}")


def candidates(rng: random.Random, text: str, attention_n: int = 0) -> list[dict]:
    out = []
    for i, cap in enumerate([text, caption(rng), caption(rng)]):
        tokens = cap.split()
        cand = {"caption": cap, "tokens": tokens, "score": -4.0 - i,
                "normalized_score": -0.5 - i / 10}
        if attention_n:
            cand["attention"] = [[[round(rng.random() / attention_n ** 2, 5)] * attention_n
                                  for _ in range(attention_n)] for _ in tokens]
        out.append(cand)
    return out


def build(g: Gallery, n: int, rng: random.Random) -> float:
    """Insert n rows straight into SQLite (one transaction) sharing one image file."""
    encoded = gallery_files.encode_image(tiny_png_bytes(), "tiny.png")
    digest, rel = g._image_file(encoded)
    g._write_image(encoded, rel)
    start = time.perf_counter()
    rows = []
    for i in range(n):
        text = caption(rng)
        cands = candidates(rng, text)
        tags = [{"label": label, "score": round(rng.random(), 3)} for label in rng.sample(NOUN, rng.randint(1, 3))]
        rows.append((digest, rel, f"IMG_{i:06d}.jpg", 4, 4, text,
                     "\n".join(c["caption"] for c in cands[1:]), json.dumps(cands), 3,
                     "bench-a" if i % 3 else "bench-b", f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:00+00:00",
                     json.dumps(tags), "\n".join(t["label"] for t in tags), round(rng.random(), 3),
                     "2024-06-01T00:00:00+00:00" if rng.random() < 0.02 else None))
    with g._write() as db:
        db.conn.executemany(
            "INSERT INTO items (image_hash, image_file, original_name, width, height, caption,"
            " alternatives, candidates, beam_size, model_name, saved_at, tags, tag_text, confidence, deleted_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    return time.perf_counter() - start


def timed(fn, log: list):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            log.append(time.perf_counter() - start)
    return wrapper


def pct(values: list[float], q: float) -> float:
    """The q-quantile (q in 0..1)."""
    return percentile(values, 100 * q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="gallery size (default 100000)")
    parser.add_argument("--saves", type=int, default=200, help="real saves to time (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the query list (default 3)")
    args = parser.parse_args()
    rng = random.Random(1234)

    with tempfile.TemporaryDirectory(prefix="bench-gallery-") as tmp:
        g = Gallery(Path(tmp) / "gallery")
        build_s = build(g, args.items, rng)
        size = sum(p.stat().st_size for p in g.folder.glob("gallery.db*"))
        print(f"built {args.items:,} items ({g.count():,} live, the rest in the trash) in {build_s:.1f} s "
              f"(database + WAL {size / 1e6:.0f} MB)")

        search_ms, hits = [], {}
        for q in QUERIES + OPERATOR_QUERIES:  # warm the page cache once, as a running app would have
            g.search(q)
        for _ in range(args.repeat):
            for q in QUERIES:
                start = time.perf_counter()
                page = g.search(q)
                search_ms.append((time.perf_counter() - start) * 1000)
                hits[q] = page.total
        operator_ms, no_word_ms, filtered_ms = [], [], []
        for _ in range(args.repeat):
            for q in OPERATOR_QUERIES:
                start = time.perf_counter()
                hits[q] = g.search(q).total
                operator_ms.append((time.perf_counter() - start) * 1000)
            for q in NO_WORD_QUERIES:
                start = time.perf_counter()
                try:
                    g.search(q)
                except GalleryError:
                    pass
                no_word_ms.append((time.perf_counter() - start) * 1000)
            for q, filters in (("dog", {"model": "bench-b"}), ("man riding", {"sort": "confidence"}),
                               ("pizza", {"saved_from": "2024-03-01", "saved_to": "2024-05-31"}),
                               ("child OR people", {"min_confidence": 0.5, "sort": "saved_at"})):
                start = time.perf_counter()
                g.search(q, **filters)
                filtered_ms.append((time.perf_counter() - start) * 1000)
        browse_ms = []
        for sort in ("saved_at", "caption", "confidence"):
            for p in (1, 2, 50, 1000):
                start = time.perf_counter()
                g.browse(page=p, sort=sort)
                browse_ms.append((time.perf_counter() - start) * 1000)
        for filters in ({"model": "bench-b"}, {"saved_from": "2024-02-01", "saved_to": "2024-02-28"}):
            start = time.perf_counter()
            g.browse(**filters)
            browse_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        trashed = g.trash().total
        trash_ms = (time.perf_counter() - start) * 1000
        # what the schema version 4 migration does to every old gallery: rebuild both search indexes
        # with the tags column (rolled back here)
        db = g.db
        db.conn.execute("BEGIN IMMEDIATE")
        start = time.perf_counter()
        migrations._replace_fts(db, schema.TABLE, schema.FTS_TABLE, schema.FTS_COLUMNS)
        migrations._replace_fts(db, schema.SEGMENTS_TABLE, schema.SEGMENTS_FTS_TABLE, schema.SEGMENTS_FTS_COLUMNS)
        reindex_s = time.perf_counter() - start
        db.conn.execute("ROLLBACK")

        photos = [noise_photo_bytes(i) for i in range(args.saves)]  # 640x480 JPEGs, different bytes each
        encode_log, write_log, insert_log, save_log = [], [], [], []
        gallery_files.encode_image = timed(gallery_files.encode_image, encode_log)
        g._write_image = timed(g._write_image, write_log)
        g._insert_row = timed(g._insert_row, insert_log)
        for i, data in enumerate(photos):
            text = caption(rng)
            cands = candidates(rng, text, attention_n=14)
            start = time.perf_counter()
            g.save(data, f"new_{i}.jpg", text, cands, 3, "bench")
            save_log.append(time.perf_counter() - start)
        write_log = write_log[:len(photos)]  # a restore inside the insert would add more
        json_kb = len(json.dumps(cands)) / 1000
        # pages of the new items (which carry attention maps, left out of pages)
        fresh_ms, get_ms = [], []
        for _ in range(20):
            start = time.perf_counter()
            fresh = g.search("new")  # matches the new_<i>.jpg file names only
            fresh_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            g.get(fresh.items[0]["id"])
            get_ms.append((time.perf_counter() - start) * 1000)
        integrity = g.integrity_check()

    ms = lambda xs, q=0.5: pct(xs, q) * 1000  # noqa: E731
    rows = [
        ("search (plain words)", pct(search_ms, .5), pct(search_ms, .9), "median < 50 ms"),
        ("search (operators etc.)", pct(operator_ms, .5), pct(operator_ms, .9), "median < 50 ms"),
        ("search, filtered/sorted", pct(filtered_ms, .5), pct(filtered_ms, .9), ""),
        ("no searchable word", pct(no_word_ms, .5), pct(no_word_ms, .9), "an error at once"),
        ("browse page (any sort)", pct(browse_ms, .5), max(browse_ms), ""),
        ("trash page", trash_ms, trash_ms, ""),
        ("search, attention items", pct(fresh_ms, .5), pct(fresh_ms, .9), ""),
        ("get with attention", pct(get_ms, .5), pct(get_ms, .9), ""),
        ("save: total", ms(save_log), ms(save_log, .9), ""),
        ("  decode check + hash", ms(encode_log), ms(encode_log, .9), ""),
        ("  image write (fsync)", ms(write_log), ms(write_log, .9), ""),
        ("  row insert + FTS", ms(insert_log), ms(insert_log, .9), "< 50 ms + image write"),
    ]
    print(f"\n{len(search_ms)} searches over {len(QUERIES)} queries, {args.saves} saves "
          f"(640x480 JPEG ~{statistics.mean(map(len, photos)) / 1000:.0f} kB, "
          f"candidates JSON ~{json_kb:.0f} kB), gallery of {args.items:,} items\n")
    print(f"{'operation':<26}{'median ms':>11}{'p90 ms':>10}   target")
    for name, med, p90, target in rows:
        print(f"{name:<26}{med:>11.2f}{p90:>10.2f}   {target}")
    ok_search = pct(search_ms, .5) < 50 and pct(operator_ms, .5) < 50
    ok_save = ms(insert_log) < 50
    print(f"\nsearch median {'PASS' if ok_search else 'FAIL'}; "
          f"save row insert {'PASS' if ok_save else 'FAIL'}; integrity_check: {integrity}")
    print(f"{trashed:,} items in the trash; schema v4 migration's search index rebuild: {reindex_s:.2f} s "
          f"for {args.items:,} items")
    times = {q: statistics.median([t for t, qq in zip(search_ms, QUERIES * args.repeat) if qq == q])
             for q in QUERIES}
    times |= {q: statistics.median([t for t, qq in zip(operator_ms, OPERATOR_QUERIES * args.repeat) if qq == q])
              for q in OPERATOR_QUERIES}
    slowest = sorted(((t, q) for q, t in times.items()), reverse=True)[:5]
    print("slowest queries: " + "; ".join(f"{q!r} {t:.1f} ms ({hits[q]:,} hits)" for t, q in slowest))


if __name__ == "__main__":
    main()
