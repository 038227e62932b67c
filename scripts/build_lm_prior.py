"""Build the language-model prior (`captioner.decoding.lm_prior`): interpolated Kneser-Ney n-gram models over
the decoder's vocabulary (plus the model folder's new words), written to runs/lm-prior/lm_prior.npz:

- `prior`: the human captions of ../shared/data/caption-text (COCO 2017 val with coco-dev's photos removed,
  Flickr30k without Flickr8k's photos), COCO repeated `--coco-repeat` times;
- `own`: Flickr8k's training captions (the decoder's own prior, for `DecodingConfig.lm_swap`).

Words outside the vocabulary become `<unk>`.

    python scripts/build_lm_prior.py --order 3
    CAPTIONER_LM_PRIOR=runs/lm-prior/lm_prior.npz python scripts/eval_hallucination.py --change lm_weight=0.3
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from captioner.decoding import lm_prior
from captioner.model.vocab import Vocab, tokenize

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAPTIONER_SHARED_DATA", ROOT.parent / "shared" / "data"))
WEIGHTS = ROOT / "src" / "captioner" / "weights"


def read_tsv(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [r[1] for r in rows if len(r) >= 2]


def lm_words() -> list[str]:
    words = Vocab.load(WEIGHTS / "vocab.json").itos
    table = WEIGHTS / "new_words.json"
    if table.is_file():
        known = set(words)
        words = words + [e["word"] for e in json.loads(table.read_text())["words"] if e["word"] not in known]
    return words


def encode(captions: list[str], words: list[str]) -> list[list[int]]:
    stoi = {w: i for i, w in enumerate(words)}
    unk = stoi[lm_prior.UNK]
    return [[stoi.get(t, unk) for t in tokenize(c)] for c in captions]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--min-count", type=int, default=1, help="drop highest-order n-grams seen fewer times")
    ap.add_argument("--corpora", default="coco,flickr30k", help="comma-separated: coco, flickr30k")
    ap.add_argument("--coco-repeat", type=int, default=1, help="count each COCO caption this many times")
    ap.add_argument("--no-own", action="store_true", help="leave out the Flickr8k model (no lm_swap)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "lm-prior" / lm_prior.FILE_NAME))
    args = ap.parse_args()
    t0 = time.time()
    words = lm_words()
    text = SHARED / "caption-text"
    prior: list[str] = []
    for name in args.corpora.split(","):
        if name == "coco":
            prior += read_tsv(text / "coco_val2017_captions.tsv") * args.coco_repeat
        elif name == "flickr30k":
            prior += read_tsv(text / "flickr30k_captions.tsv")
        else:
            raise SystemExit(f"unknown corpus {name!r}")
    models = {"prior": lm_prior.build(encode(prior, words), words, args.order, args.min_count)}
    if not args.no_own:
        from captioner.data import load_dataset

        ds = load_dataset(SHARED / "flickr8k")
        own = [c for i in ds.split("train") for c in ds.captions[i]]
        models["own"] = lm_prior.build(encode(own, words), words, args.order, args.min_count)
    lm_prior.save(args.out, words, models)
    print(json.dumps({"out": args.out, "bytes": os.path.getsize(args.out), "words": len(words),
                      "prior_captions": len(prior), "order": args.order, "min_count": args.min_count,
                      "seconds": round(time.time() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
