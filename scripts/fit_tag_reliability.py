"""Fit the tag words' reliability for grounded decoding on Flickr8k train and save it as
`tag_reliability.json` beside the shipped weights (`captioner.tags.reliability`).

For every tag word: the training photos where the backbone's classifier gives it at least `--tag-min`
(the shipped decoding's, 0.5), and how many of those have one of their 5 human captions naming the
word (or its plural). Train only: the setting that uses it (`DecodingConfig.tag_reliable`) is chosen
on val (`scripts/eval_grounding.py --tag-reliable ...`).

    python scripts/fit_tag_reliability.py          # encodes the 6,000 train photos once (cached), then saves
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

import eval_cache as data

from captioner.model.vocab import tokenize
from captioner.tags.reliability import RELIABILITY_FILE, TagReliability

WEIGHTS = data.ROOT / "src" / "captioner" / "weights"
CACHE = data.CACHE / "train_words.json"  # {photo id: {tag word: probability >= 0.05}}


def train_word_probabilities(cap, ds) -> dict[str, dict[str, float]]:
    if CACHE.is_file():
        return json.loads(CACHE.read_text())
    import torch

    ids, out, t = list(ds.split("train")), {}, time.time()
    for s in range(0, len(ids), 32):
        prepared = [cap.prepare(str(ds.image_path(i))) for i in ids[s : s + 32]]
        probs = cap.tagger.word_probabilities(cap.encode(torch.stack([p.pixels for p in prepared])))
        for j, i in enumerate(ids[s : s + 32]):
            keep = (probs[j] >= 0.05).nonzero().squeeze(1).tolist()
            out[i] = {cap.tagger.labels[k]: round(float(probs[j, k]), 4) for k in keep}
        print(f"train: {s + len(prepared)}/{len(ids)} photos ({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(out))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag-min", type=float, default=None, help="a tag counts from this probability (default: the model's)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    from captioner.data import load_dataset

    cap = data.captioner()
    tag_min = args.tag_min if args.tag_min is not None else cap.decoding.tag_min
    ds = load_dataset(data.SHARED / "flickr8k")
    probs = train_word_probabilities(cap, ds)
    seen, named = Counter(), Counter()
    for photo, words in probs.items():
        tokens = {t for c in ds.captions[photo] for t in tokenize(c)}
        for word, p in words.items():
            if p >= tag_min:
                seen[word] += 1
                named[word] += any(w in tokens for w in (word, word + "s", word + "es")) if " " not in word else \
                    all(part in tokens for part in word.split())
    table = TagReliability({w: (seen[w], named[w]) for w in seen}, about={
        "fitted_on": f"Flickr8k train ({len(probs)} photos)", "tag_min": tag_min,
        "named": "one of the photo's 5 human captions holds the word or its plural (every word of a multi-word label)",
        "made_by": "scripts/fit_tag_reliability.py"})
    common = sorted(seen, key=lambda w: -seen[w])[:25]
    print(json.dumps({w: [seen[w], round(table.share(w), 2)] for w in common}))
    if not args.no_save:
        (WEIGHTS / RELIABILITY_FILE).write_text(json.dumps(table.to_dict(), indent=0) + "\n")
        print(f"saved {WEIGHTS / RELIABILITY_FILE} ({len(seen)} words)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
