"""Write `src/captioner/decoding/copula_table.json`: how often each word follows `is` / `are` in the Flickr8k
train captions (`captioner.decoding.copula.count_followers`), the data the `no_bare_noun` rule reads, and the
share of each frequent word's uses that come right before one (`subject_shares`), which `no_bare_subject` reads.

    python scripts/build_copula_table.py            # ../shared/data/flickr8k
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from captioner.data.flickr8k import read_flickr8k
from captioner.decoding.copula import COPULAS, MIN_USES, TABLE_FILE, count_followers, subject_shares
from captioner.model.vocab import tokenize

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "captioner" / "decoding" / TABLE_FILE


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CAPTIONER_DATA", str(ROOT.parent / "shared" / "data" / "flickr8k")))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    ds = read_flickr8k(args.data)
    ids = ds.split("train")
    captions = [tokenize(c) for i in ids for c in ds.captions[i]]
    counts = count_followers(captions)
    shares = subject_shares(captions)
    table = {"about": f"How often each word follows a copula ({' / '.join(COPULAS)}) in the {len(ids)} Flickr8k train "
                      f"photos' captions (followers), and of each word used at least {MIN_USES} times the share of its "
                      "uses right before a copula (subject_shares): the data captioner.decoding.copula learns its rules "
                      "from. Written by scripts/build_copula_table.py; do not edit by hand.",
             "followers": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
             "subject_shares": dict(sorted(shares.items()))}
    Path(args.out).write_text(json.dumps(table, indent=0) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(counts)} followers, {len(shares)} shares", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
