"""The targets for `captioner learn` (learning from the user's edited captions).

    python -m benchmarks.bench_learn                    # all three parts
    python -m benchmarks.bench_learn --parts simulate   # only the user simulation (five folds)
    python -m benchmarks.bench_learn --forget-images 300 --folds-forget 1

1. **simulate**: the 106 coco-dev photos play a user's gallery, their first reference caption the user's
   edit. Five folds (photo i in fold i mod 5): `learn` on the other four fifths (exactly what
   `captioner learn` runs: its own held-out check, then, by default, learning again from all 85 edits),
   then the learned model folder loaded back
   (`load_model` + `folder_extras`, as `Captioner.load` does) and the held-out fifth captioned from
   its encoder grids with the model's own decoding (`FeatureCaptioner`: grounding and the support penalty,
   as `Captioner`), beside the shipped model under the same decoding.
   Over the 106 held-out captions: CIDEr-D (x100) against the user's caption (the first reference;
   document frequencies from those captions), CIDEr against all five references, and CHAIR-s / CHAIR-i
   (`captioner.evaluation.hallucination`, against all five references). Target: CIDEr (user's
   caption) at least +25% over the shipped model, CHAIR-s lower. coco-dev is the user's data here only:
   nothing of the shipped model is tuned on it.
2. **forget**: Flickr8k val BLEU-4 and CIDEr (pycocoevalcap, all five references) of the learned
   models of the first --folds-forget folds beside the shipped model. Target: within 1.0 / 3.0.
3. **time**: a temporary gallery of --time-edits (100) photos (coco-dev, then Flickr8k val past 106) with
   their encoder grids stored (as the studio and `captioner gallery add` store them), every caption edited
   to the first reference; then `captioner learn --gallery` in a fresh process, timed, with its peak
   memory (max RSS). Target: at most 10 minutes on the 2-core CPU (100 edits; 45 minutes for 1,000),
   memory under 2 GB.

Encoder grids come from runs/eval-cache/{coco,val}/grids.npy (scripts/eval_cache.py makes them once).
The machine is shared: the load average is printed with every timing.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._stats import load_text

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAPTIONER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def coco():
    from scripts.eval_cache import grids, load_set

    ids, paths, refs = load_set("coco")
    gid, arr = grids("coco")
    assert list(gid) == list(ids)
    return ids, paths, refs, np.asarray(arr, dtype=np.float32).reshape(len(ids), -1, arr.shape[-1])


def shipped():
    from captioner.model.folder import default_model_dir, load_model
    from captioner.pipeline import folder_extras

    return load_model(default_model_dir(), with_encoder=False), folder_extras(default_model_dir())


def captions_of(folder: Path | None, grids) -> list[str]:
    """Captions from grids with the model folder's own decoding (None: the shipped model)."""
    from captioner.learning.heldout import FeatureCaptioner
    from captioner.model.folder import load_model
    from captioner.pipeline import folder_extras

    if folder is None:
        model, extras = shipped()
    else:
        model, extras = load_model(folder, with_encoder=False), folder_extras(folder)
    return FeatureCaptioner(model, extras).captions(list(grids))


def scores(captions: list[str], refs: list[list[str]]) -> dict:
    from captioner.evaluation.hallucination import hallucination_scores
    from captioner.learning.heldout import cider

    h = hallucination_scores(zip(captions, refs))
    return {"cider_user": round(cider(captions, [[r[0]] for r in refs]), 2),
            "cider_all_refs": round(cider(captions, refs), 2),
            "chair_s": round(h.chair_s, 1), "chair_i": round(h.chair_i, 1), "mention_recall": round(h.recall, 1)}


def simulate(args, cfg, work: Path) -> dict:
    from captioner.learning import Edit, LearnRefused, learn

    ids, paths, refs, grids = coco()
    n = len(ids)
    base_caps = captions_of(None, grids)
    learned_caps = [None] * n
    folds = []
    for k in range(5):
        train = [i for i in range(n) if i % 5 != k]
        test = [i for i in range(n) if i % 5 == k]
        edits = [Edit(ids[i], str(paths[i]), refs[ids[i]][0], features=grids[i].astype(np.float16)) for i in train]
        out = work / f"fold{k}"
        t0 = time.time()
        try:
            report = learn(edits, out, cfg, source="coco-dev simulation", progress=False, log=lambda s: None)
            caps = captions_of(out, grids[test])
            info = {"fold": k, "seconds": round(time.time() - t0, 1), "load": load_text(),
                    "own_held_out": report.held_out.to_dict() if report.held_out else None,
                    "trained_on": report.trained_on, "new_words": len(report.new_words),
                    "confidence_refitted": bool((report.confidence or {}).get("refitted"))}
        except LearnRefused as exc:  # the user keeps the shipped model
            caps = [base_caps[i] for i in test]
            info = {"fold": k, "refused": str(exc)}
        for i, c in zip(test, caps):
            learned_caps[i] = c
        folds.append(info)
        print(json.dumps(info), flush=True)
    rlist = [refs[i] for i in ids]
    before, after = scores(base_caps, rlist), scores(learned_caps, rlist)
    changed = float(np.mean([a != b for a, b in zip(learned_caps, base_caps)]))
    examples = [{"photo": ids[i], "user": refs[ids[i]][0], "shipped": base_caps[i], "learned": learned_caps[i]}
                for i in range(0, n, 15)]
    return {"shipped": before, "learned": after, "changed_share": round(changed, 3),
            "cider_user_gain_pct": round(100 * (after["cider_user"] / max(before["cider_user"], 1e-9) - 1), 1),
            "folds": folds, "examples": examples}


def forget(args, work: Path) -> dict:
    from scripts.eval_cache import grids, load_set

    from captioner.evaluation.metrics import score_captions

    vid, _, vrefs = load_set("val")
    gid, arr = grids("val")
    m = args.forget_images or len(gid)
    g = np.asarray(arr[:m], dtype=np.float32).reshape(m, -1, arr.shape[-1])
    keys = list(gid)[:m]
    refs = {k: vrefs[k] for k in keys}
    out = {}
    for name, folder in [("shipped", None)] + [(f"fold{k}", work / f"fold{k}") for k in range(args.folds_forget)]:
        if folder is not None and not (folder / "config.json").is_file():
            continue
        t0 = time.time()
        caps = captions_of(folder, g)
        s = score_captions(dict(zip(keys, caps)), refs, metrics=("bleu4", "cider"))
        out[name] = {"bleu4": round(s["bleu4"], 2), "cider": round(s["cider"], 2), "images": m,
                     "seconds": round(time.time() - t0, 1), "load": load_text()}
        print(name, json.dumps(out[name]), flush=True)
    return out


def timing_photos(n: int):
    """(ids, paths, refs, grids) of `n` photos for the timing: the coco-dev ones, then (past its 106) Flickr8k
    val photos with their first reference as the edit (a timing only: nothing is measured or tuned on them)."""
    from scripts.eval_cache import grids as cached_grids
    from scripts.eval_cache import load_set

    ids, paths, refs, grids = coco()
    if n <= len(ids):
        return ids, paths, refs, grids
    vids, vpaths, vrefs = load_set("val")
    gid, arr = cached_grids("val")
    assert list(gid) == list(vids)
    need = n - len(ids)
    if need > len(vids):
        raise SystemExit(f"--time-edits {n}: at most {len(ids) + len(vids)} photos (coco-dev and Flickr8k val)")
    vgrids = np.asarray(arr[:need], dtype=np.float32).reshape(need, -1, arr.shape[-1])
    return (list(ids) + list(vids[:need]), list(paths) + list(vpaths[:need]), {**refs, **vrefs},
            np.concatenate([grids, vgrids]))


def timing(args, cfg, work: Path) -> dict:
    from captioner.model.folder import default_model_dir, load_model
    from captioner.storage.gallery import Gallery

    ids, paths, refs, grids = timing_photos(args.time_edits)
    name = load_model(default_model_dir(), with_encoder=False).cfg.name
    gdir = work / f"gallery-{args.time_edits}"
    with Gallery(gdir) as gallery:
        if gallery.count() < args.time_edits:
            for i in range(args.time_edits):
                item = gallery.save(str(paths[i]), ids[i], "a photo", model_name=name, features=grids[i])
                gallery.update_caption(item, refs[ids[i]][0])
    out = gdir / "models" / "timed"
    from dataclasses import asdict

    flags = [f"--{k.replace('_', '-')}={v}" if not isinstance(v, bool) else f"--{'' if v else 'no-'}{k.replace('_', '-')}"
             for k, v in asdict(cfg).items()]
    cmd = [sys.executable, "-m", "captioner", "learn", "--gallery", str(gdir), "--out", str(out), "--quiet",
           "--json", *flags]
    start = load_text()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_mb = usage.ru_maxrss / 1024
    # CPU seconds of the command: on a machine loaded by other jobs, wall time overstates what it needs
    cpu_s = (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    result = {"edits": args.time_edits, "seconds": round(seconds, 1), "cpu_seconds": round(cpu_s, 1),
              "max_rss_mb": round(rss_mb),
              "returncode": proc.returncode, "load_start": start, "load_end": load_text(),
              "report": json.loads(proc.stdout) if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1:]}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    from captioner.learning import LearnConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="simulate,forget,time")
    p.add_argument("--work", default=None, help="folder for the learned models (default: a temporary one)")
    p.add_argument("--forget-images", type=int, default=0, help="Flickr8k val photos for forgetting (0: all 1,000)")
    p.add_argument("--folds-forget", type=int, default=1, help="learned models measured for forgetting")
    p.add_argument("--time-edits", type=int, default=100)
    p.add_argument("--settings", default="{}", help="LearnConfig fields as JSON (default: the shipped defaults)")
    p.add_argument("--json", metavar="FILE", help="write the figures here")
    args = p.parse_args()
    cfg = LearnConfig(**json.loads(args.settings)).validate()
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = {"settings": cfg.fingerprint_fields(), "threads": cfg.threads, "load_start": load_text()}
        if "simulate" in parts:
            result["simulate"] = simulate(args, cfg, work)
            print(json.dumps({k: v for k, v in result["simulate"].items() if k != "examples"}), flush=True)
        if "time" in parts:  # before `forget`: the peak memory of child processes then is the learn command's
            result["time"] = timing(args, cfg, work)
        if "forget" in parts:  # its Java tokenizer is a child process too
            result["forget"] = forget(args, work)
        result["load_end"] = load_text()
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
