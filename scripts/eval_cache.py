"""Shared by the evaluation scripts (calibrate_confidence.py, eval_grounding.py, eval_hallucination.py, ...):
the evaluation sets, a cache of encoder grids per set, and cached decoding passes, so a re-run never
captions twice.

Sets: `val` / `test` (Flickr8k's official splits, ../shared/data/flickr8k) and `coco` (the 106 COCO
photos of ../shared/data/coco-dev: a generalisation check, never tuned on). Cache: runs/eval-cache/<set>/
(`grids.npy` float32 (n, N, N, C), `ids.json`, `pass-<key>.jsonl` one line per image).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from captioner.atomic_write import atomic_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAPTIONER_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / "runs" / "eval-cache"
if not os.environ.get("CAPTIONER_LM_PRIOR") and (ROOT / "runs" / "lm-prior" / "lm_prior.npz").is_file() \
        and not (ROOT / "src" / "captioner" / "weights" / "lm_prior.npz").is_file():
    os.environ["CAPTIONER_LM_PRIOR"] = str(ROOT / "runs" / "lm-prior" / "lm_prior.npz")  # built, not shipped

#: how grounded decoding works, part of a steered pass's cache key; bump it whenever the grounded search
#: changes. "" was the first version (a second decode of the photos whose caption missed their tag),
#: "single-pass" / "single-pass-any" steered every tagged photo in one search (dropped: worse on val),
#: "parallel" searches each tagged photo with and without the bonus side by side (new words without the
#: article rule), "parallel-articles" with the article rule, "side-by-side" stops the steered twin once
#: every plain beam names a tag, "side-by-side-any" (the current one) once any plain beam does; the
#: last four give the same captions.
GROUNDING = "side-by-side-any"
#: the decoding settings there were when passes were first cached; later ones enter a pass's key only
#: when they differ from their default
ORIGINAL_FIELDS = {"beam_size", "max_len", "length_penalty", "no_repeat_ngram", "tag_bonus", "tag_min", "tag_unsure",
                  "tag_reliable"}


def grounding_key() -> str:
    """`GROUNDING` plus the shipped new-words table (`weights/new_words.json`), if any."""
    table = ROOT / "src" / "captioner" / "weights" / "new_words.json"
    extra = hashlib.sha256(table.read_bytes()).hexdigest()[:8] if table.is_file() else ""
    return GROUNDING + extra


def load_set(name: str) -> tuple[list[str], list[Path], dict[str, list[str]]]:
    """(ids, image paths, references by id) of `val`, `test` or `coco`."""
    if name in ("val", "test"):
        from captioner.data import load_dataset

        ds = load_dataset(SHARED / "flickr8k")
        ids = list(ds.split(name))
        return ids, [ds.image_path(i) for i in ids], {i: ds.captions[i] for i in ids}
    if name == "coco":
        data = json.loads((SHARED / "coco-dev" / "refs.json").read_text())["images"]
        ids = [d["file"] for d in data]
        return ids, [SHARED / "coco-dev" / "images" / i for i in ids], {d["file"]: d["captions"] for d in data}
    raise SystemExit(f"unknown set {name!r}: val, test or coco")


def captioner():
    from captioner.pipeline import Captioner

    return Captioner.load()


def grids(name: str, cap=None) -> tuple[list[str], np.ndarray]:
    """The encoder grids of a set (computed once through the pipeline's own preprocessing and encoder)."""
    folder = CACHE / name
    if (folder / "grids.npy").is_file():
        return json.loads((folder / "ids.json").read_text()), np.load(folder / "grids.npy", mmap_mode="r")
    import torch

    cap = cap or captioner()
    ids, paths, _ = load_set(name)
    out = []
    for s in range(0, len(paths), 16):
        prepared = [cap.prepare(str(p)) for p in paths[s : s + 16]]
        bad = [p.error for p in prepared if p.error]
        if bad:
            raise SystemExit(bad[0])
        out.append(cap.encode(torch.stack([p.pixels for p in prepared])).float().numpy())
        print(f"{name}: encoded {s + len(prepared)}/{len(paths)}", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.concatenate(out)
    with atomic_path(folder / "grids.npy", suffix=".tmp.npy") as tmp:
        np.save(tmp, arr)
    (folder / "ids.json").write_text(json.dumps(ids))
    return ids, arr


def decode_pass(name: str, decoding, cap=None, tag: str = "") -> list[dict]:
    """Candidates of every image of a set decoded from its cached grids with `decoding` (a
    `DecodingConfig`): [{"id", "candidates": [{"tokens", "score"}], "word_probs": {...top words}}].
    Cached per set and settings; resumes a partial pass."""
    import torch


    settings = decoding.to_dict()
    defaults = type(decoding)().to_dict()
    for k in [k for k in settings if k not in ORIGINAL_FIELDS and settings[k] == defaults[k]]:
        settings.pop(k)  # a setting added later, left at its default, keeps the passes made before it
    if not settings.get("tag_bonus"):  # grounding off: tag_min changes nothing (and older passes lack both)
        settings.pop("tag_bonus", None)
        settings.pop("tag_min", None)
        settings.pop("tag_unsure", None)
        settings.pop("tag_reliable", None)
    else:
        tag = grounding_key() + tag
        if not settings.get("tag_unsure"):  # 0: every missing caption may change (passes made before it existed)
            settings.pop("tag_unsure", None)
        if not settings.get("tag_reliable"):  # 0: every tag steers (passes made before it existed)
            settings.pop("tag_reliable", None)
        else:  # the table the setting reads
            table = ROOT / "src" / "captioner" / "weights" / "tag_reliability.json"
            tag += hashlib.sha256(table.read_bytes()).hexdigest()[:8] if table.is_file() else ""
    if settings.get("support_penalty"):  # the head the setting reads
        head = ROOT / "src" / "captioner" / "weights" / "support_head.safetensors"
        tag += hashlib.sha256(head.read_bytes()).hexdigest()[:8] if head.is_file() else ""
    if settings.get("lm_weight") or settings.get("lm_swap"):  # the language-model prior the settings read
        from captioner.decoding.lm_prior import default_path

        tag += hashlib.sha256(default_path().read_bytes()).hexdigest()[:8] if default_path().is_file() else ""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + tag.encode()).hexdigest()[:10]
    path = CACHE / name / f"pass-{key}.jsonl"
    done = []
    if path.is_file():
        done = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ids, arr = grids(name, cap)
    if len(done) >= len(ids):
        return done[: len(ids)]
    cap = cap or captioner()
    tagger = cap.tagger
    with path.open("a") as f:
        for s in range(len(done), len(ids), 50):
            feats = torch.from_numpy(np.array(arr[s : s + 50]))
            probs = tagger.word_probabilities(feats)
            cands = cap.decode(feats, decoding, probs)
            for j, cs in enumerate(cands):
                top = torch.topk(probs[j], 10)
                rec = {"id": ids[s + j],
                       "candidates": [{"tokens": c.tokens, "score": c.score, "n_ids": len(c.ids)} for c in cs],
                       "words": {tagger.labels[i]: round(float(p), 5) for p, i in zip(top.values, top.indices)}}
                f.write(json.dumps(rec) + "\n")
                done.append(rec)
            f.flush()
            print(f"{name} pass {key}: {len(done)}/{len(ids)}", file=sys.stderr, flush=True)
    return done
