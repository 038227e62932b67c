"""Single-photo latency at beam 3 of a decoding against today's, side by side (the support penalty's budget: within
10%), in the style of `benchmarks/bench_caption.py` section 1b: the two decodings alternate photo by photo
and order by order, so machine noise hits both alike; medians over every photo and round.

    python scripts/bench_support.py --change support_penalty=2 --change no_echo=1 --n 30 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import eval_cache as data
from eval_hallucination import parse_changes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--change", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--base", action="append", default=[], metavar="FIELD=VALUE",
                    help="changes to the model's decoding for the baseline (default: none)")
    ap.add_argument("--n", type=int, default=30, help="photos per set")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    cap = data.captioner()
    base = cap.decoding_for(beam_size=3).replace(**parse_changes(args.base))
    new = base.replace(**parse_changes(args.change))
    load0 = os.getloadavg()
    out = {}
    for name in ("test", "coco"):
        _, paths, _ = data.load_set(name)
        paths = [str(p) for p in paths[: args.n]]
        cap.caption(paths[0], base)
        cap.caption(paths[0], new)
        times: dict = {"base": [], "new": []}
        caps: dict = {"base": {}, "new": {}}
        for r in range(args.rounds):
            for i, p in enumerate(paths):
                order = [("base", base), ("new", new)]
                for label, dec in order if (i + r) % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    res = cap.caption(p, dec)
                    times[label].append(time.perf_counter() - t0)
                    caps[label][i] = res.caption
        med = {k: 1000 * statistics.median(v) for k, v in times.items()}
        out[name] = {"photos": len(paths), "rounds": args.rounds, "median_ms_base": round(med["base"], 1),
                     "median_ms_new": round(med["new"], 1), "ratio": round(med["new"] / med["base"], 3),
                     "captions_changed": sum(caps["base"][i] != caps["new"][i] for i in caps["base"])}
    out["load_average_start_end"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    out["change"] = parse_changes(args.change)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
