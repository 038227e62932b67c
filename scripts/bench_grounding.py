"""Single-photo latency with grounded decoding against without it, in one process, alternating photo by
photo so that machine noise hits both alike (issue 13's budget: beam-3 single-photo latency within
10% of release 0.1.0's, whose decoding is this model's with `tag_bonus` 0).

    python scripts/bench_grounding.py --photos 30 --rounds 3            # Flickr8k test photos
    python scripts/bench_grounding.py --set coco --photos 106 --rounds 2

Prints the median end-to-end `Captioner.caption` time at beam 3 for each setting, their ratio, and the
share of photos with a confident tag (the ones grounded decoding searches twice side by side).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import issue13_data as data  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="test", choices=["val", "test", "coco"])
    ap.add_argument("--photos", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--beam-size", type=int, default=3)
    ap.add_argument("--tag-bonus", type=float, default=None, help="grounded setting (default: the model's, else 8)")
    ap.add_argument("--tag-min", type=float, default=None, help="grounded setting (default: the model's)")
    args = ap.parse_args()
    import torch

    cap = data.captioner()
    grounded = cap.decoding.replace(beam_size=args.beam_size, tag_bonus=args.tag_bonus, tag_min=args.tag_min)
    if grounded.tag_bonus <= 0:
        grounded = grounded.replace(tag_bonus=8.0)
    off = grounded.replace(tag_bonus=0.0)
    _, paths, _ = data.load_set(args.set)
    paths = [str(p) for p in paths[: args.photos]]
    cap.caption(paths[0], off)
    cap.caption(paths[0], grounded)  # warm both paths
    times = {"off": [], "grounded": []}
    steered = 0
    for r in range(args.rounds):
        for i, p in enumerate(paths):
            order = (("off", off), ("grounded", grounded)) if (i + r) % 2 == 0 else (("grounded", grounded), ("off", off))
            for name, dec in order:
                t = time.perf_counter()
                res = cap.caption(p, dec)
                times[name].append(time.perf_counter() - t)
                if r == 0 and name == "grounded":
                    words = set(cap.model.vocab.stoi) | set(cap.new_words.words if cap.new_words else ())
                    steered += any(t.score >= grounded.tag_min and (t.label in words or t.label + "s" in words)
                                   for t in res.tags)
    med = {k: 1000 * statistics.median(v) for k, v in times.items()}
    out = {"set": args.set, "photos": len(paths), "rounds": args.rounds, "beam_size": args.beam_size,
           "tag_bonus": grounded.tag_bonus, "tag_min": grounded.tag_min, "threads": torch.get_num_threads(),
           "median_ms_off": round(med["off"], 1), "median_ms_grounded": round(med["grounded"], 1),
           "ratio": round(med["grounded"] / med["off"], 3),
           "photos_with_a_steering_tag": steered}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
