"""Build the sentence bank shipped beside the weights (src/captioner/weights/sentence_bank.safetensors).

    python scripts/build_sentence_bank.py                       # both corpora, the shipped model
    python scripts/build_sentence_bank.py --max-words 14 --mean-photos 200

The sentences: the captions of ../shared/data/caption-text (COCO 2017 val, CC BY 4.0; Flickr30k,
non-commercial terms) whose every word the model's vocabulary has, `--min-words`..`--max-words` long,
each word sequence once. The prior: each sentence's mean log-probability per token under the model given
the mean encoder grid of `--mean-photos` Flickr8k training photos (never validation or test photos), so
the runtime can discount what the captioner would say of any photo.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from captioner.bank.build import bank_tokens, read_corpus
from captioner.bank.scoring import SentenceScorer, sentence_likelihood
from captioner.bank.store import BANK_FILE, BankData, save_bank

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAPTIONER_SHARED_DATA", ROOT.parent / "shared" / "data"))

CORPORA = (("coco", "coco_val2017_captions.tsv"), ("flickr30k", "flickr30k_captions.tsv"))


def mean_grid(cap, n_photos: int) -> np.ndarray:
    from captioner.data import load_dataset

    ds = load_dataset(SHARED / "flickr8k")
    ids = sorted(ds.split("train"))
    picked = [ids[i] for i in np.random.default_rng(0).choice(len(ids), n_photos, replace=False)]
    total = None
    for s in range(0, n_photos, 16):
        prepared = [cap.prepare(str(ds.image_path(i))) for i in picked[s : s + 16]]
        grids = cap.encode(torch.stack([p.pixels for p in prepared])).float()
        grids = grids.reshape(len(prepared), -1, grids.shape[-1]).sum(dim=0)
        total = grids if total is None else total + grids
    return (total / n_photos).numpy()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", default=str(SHARED / "caption-text"))
    ap.add_argument("--out", default=str(ROOT / "src" / "captioner" / "weights" / BANK_FILE))
    ap.add_argument("--min-words", type=int, default=4)
    ap.add_argument("--max-words", type=int, default=16)
    ap.add_argument("--mean-photos", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=1024)
    args = ap.parse_args(argv)

    from captioner.pipeline import Captioner

    cap = Captioner.load()
    vocab = cap.model.vocab
    corpora = [(n, read_corpus(Path(args.text) / f)) for n, (_, f) in enumerate(CORPORA)]
    tokens, source = bank_tokens(vocab, corpora, args.min_words, args.max_words)
    print(f"{len(tokens)} sentences ({', '.join(f'{name} {int((source == n).sum())}' for n, (name, _) in enumerate(CORPORA))})",
          file=sys.stderr)
    grid = mean_grid(cap, args.mean_photos)
    scorer = SentenceScorer(cap.model.decoder)
    order = np.argsort((tokens != 0).sum(axis=1), kind="stable")  # similar lengths together
    prior = np.zeros(len(tokens), np.float32)
    start = time.time()
    for s in range(0, len(order), args.chunk):
        rows = order[s : s + args.chunk]
        prior[rows] = sentence_likelihood(scorer, grid, tokens[rows], vocab.start_id, vocab.end_id)
        print(f"prior {s + len(rows)}/{len(order)} ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    save_bank(args.out, BankData(tokens, source, prior, grid, tuple(n for n, _ in CORPORA), cap.name, len(vocab)))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
