"""Sweep the language-model prior's settings on the first `--n` photos of a set (a quick look before a full
`eval_hallucination.py` pass): BLEU-4, CIDEr, CHAIR-s and recall per setting, from the cached encoder grids.

    python scripts/tune_lm_prior.py --set val --n 300 --try lm_weight=0.3 --try lm_weight=0.3,lm_swap=0.3
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import eval_cache as data
import numpy as np
import torch
from eval_hallucination import parse_changes

from captioner.evaluation.hallucination import hallucination_scores
from captioner.evaluation.metrics import score_captions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="val")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="F=V,F=V",
                    help="one setting (comma-separated changes to the model's decoding); repeatable")
    args = ap.parse_args()
    cap = data.captioner()
    ids, arr = data.grids(args.set, cap)
    _, _, refs = data.load_set(args.set)
    ids = ids[: args.n]
    for item in ["", *args.tries]:
        decoding = cap.decoding.replace(**parse_changes(item.split(",") if item else []))
        t0, caps = time.time(), {}
        if not item:  # the model's default: its cached full pass
            caps = {r["id"]: " ".join(r["candidates"][0]["tokens"]) for r in data.decode_pass(args.set, decoding, cap)}
            caps = {i: caps[i] for i in ids}
        for s in range(0, len(ids) if item else 0, 50):
            feats = torch.from_numpy(np.array(arr[s: min(s + 50, len(ids))]))
            for i, cs in zip(ids[s: s + 50], cap.decode(feats, decoding)):
                caps[i] = " ".join(cs[0].tokens)
        sc = score_captions(caps, {i: refs[i] for i in ids}, metrics=("bleu4", "cider"))
        h = hallucination_scores((caps[i], refs[i]) for i in ids).to_dict()
        print(json.dumps({"set": args.set, "n": len(ids), "try": item or "default", "bleu4": round(sc["bleu4"], 2),
                          "cider": round(sc["cider"], 2), "chair_s": h["chair_s"], "recall": h["recall"],
                          "seconds": round(time.time() - t0)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
