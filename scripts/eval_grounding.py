"""Grounded decoding and object tags: settings chosen on Flickr8k val, measured on
coco-dev and (once, for what ships) Flickr8k test. Every pass is cached (eval_cache.py).

Measures per set and setting: BLEU-4 and CIDEr (COCO tools, as `captioner evaluate`), object
mention recall (the share of photos whose caption names at least one object that a reference
names; objects: the COCO-80 category words without `person`, plus the single-word tag labels of
the ImageNet map), and the tags' precision@3 (of the three most likely tag words, the share that a
reference names).

    python scripts/eval_grounding.py --set val --bonus 0,3,6,9 --tag-min 0.5
    python scripts/eval_grounding.py --set coco --bonus 0,6 --tag-min 0.5
    python scripts/eval_grounding.py --set val --bonus 0,8 --tag-min 0.5 --tag-unsure 0,-0.84
"""
from __future__ import annotations

import argparse
import json
import sys

import eval_cache as data

from captioner.evaluation.metrics import score_captions
from captioner.model.vocab import tokenize

COCO80 = """bicycle car motorcycle airplane bus train truck boat traffic light fire hydrant stop sign parking meter bench
bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee skis snowboard
ball kite bat glove skateboard surfboard racket bottle glass cup fork knife spoon bowl banana apple sandwich orange
broccoli carrot hotdog pizza donut cake chair couch plant bed table toilet tv television laptop mouse remote keyboard phone
microwave oven toaster sink refrigerator book clock vase scissors teddy bear hair drier toothbrush bike motorbike plane
sofa laptop computer kitchen food desk bathroom""".split()


def object_words() -> set[str]:
    from captioner.tags.classes import class_words

    words = {w for ws in class_words() for w in ws if " " not in w and "-" not in w}
    return (words | set(COCO80)) - {"light", "sign", "stop", "fire", "parking", "meter", "hair", "drier", "bat",
                                     "glove", "food", "text", "screenshot", "field", "shore", "beach", "lake",
                                     "mountain", "valley", "snow", "water", "grass", "street"}


def singular(w: str, lexicon: set[str]) -> str:
    for cut in ("es", "s"):
        if w.endswith(cut) and w[: -len(cut)] in lexicon:
            return w[: -len(cut)]
    return {"men": "man", "women": "woman", "people": "person", "children": "child"}.get(w, w)


def named_objects(tokens, lexicon) -> set[str]:
    return {singular(t, lexicon) for t in tokens} & lexicon


def mention_recall(records, refs, lexicon) -> float:
    hits = 0
    for r in records:
        ref_objs = set().union(*(named_objects(tokenize(c), lexicon) for c in refs[r["id"]]))
        hits += bool(named_objects(r["candidates"][0]["tokens"], lexicon) & ref_objs)
    return hits / len(records)


def tag_precision_at_3(records, refs, lexicon) -> float:
    total = 0.0
    for r in records:
        ref_tokens = set().union(*({singular(t, lexicon) for t in tokenize(c)} for c in refs[r["id"]]))
        top = sorted(r["words"].items(), key=lambda kv: -kv[1])[:3]
        total += sum(any(singular(w, lexicon) in ref_tokens for w in label.split()) for label, _ in top) / 3
    return total / len(records)


def evaluate(name: str, decoding, cap=None) -> dict:
    records = data.decode_pass(name, decoding, cap)
    _, _, refs = data.load_set(name)
    preds = {r["id"]: " ".join(r["candidates"][0]["tokens"]) for r in records}
    s = score_captions(preds, {i: refs[i] for i in preds}, metrics=("bleu4", "cider"))
    lex = object_words()
    return {"set": name, "tag_bonus": decoding.tag_bonus, "tag_min": decoding.tag_min,
            "tag_unsure": decoding.tag_unsure, "tag_reliable": decoding.tag_reliable, "n": len(records),
            "bleu4": round(s["bleu4"], 2), "cider": round(s["cider"], 2),
            "mention_recall": round(100 * mention_recall(records, refs, lex), 1),
            "tag_precision_at_3": round(100 * tag_precision_at_3(records, refs, lex), 1),
            "changed_captions": None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="val", choices=["val", "test", "coco"])
    ap.add_argument("--bonus", default="0,3,6,9", help="tag_bonus values, comma-separated")
    ap.add_argument("--tag-min", default="0.5", help="tag_min values, comma-separated")
    ap.add_argument("--tag-unsure", default="0", help="tag_unsure values, comma-separated (0: always)")
    ap.add_argument("--tag-reliable", default="0", help="tag_reliable values, comma-separated (0: every tag)")
    ap.add_argument("--beam-size", type=int, default=None)
    args = ap.parse_args()
    cap = data.captioner()
    base = cap.decoding.replace(beam_size=args.beam_size)
    rows, first = [], None
    settings = [(float(m), float(b), float(u), float(r)) for m in args.tag_min.split(",")
                for b in args.bonus.split(",") for u in args.tag_unsure.split(",") for r in args.tag_reliable.split(",")]
    for m, b, u, r in settings:
        dec = base.replace(tag_bonus=b, tag_min=m, tag_unsure=u, tag_reliable=r)
        row = evaluate(args.set, dec, cap)
        recs = data.decode_pass(args.set, dec, cap)
        if first is None:
            first = recs
        row["changed_captions"] = sum(a["candidates"][0]["tokens"] != b_["candidates"][0]["tokens"]
                                      for a, b_ in zip(first, recs))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
