"""The sentence bank: settings chosen on Flickr8k val, checked on coco-dev, Flickr8k test once
per candidate to ship. Every expensive pass is cached under runs/bank/<set>/ (encoder grids and the
default decoding come from scripts/eval_cache.py's cache).

For each photo the cache holds the `--kmax` bank sentences the first stage ranks highest, their
first-stage scores and teacher-forced likelihoods, and the generated caption's own first-stage score and
prior; a setting (shortlist, prior, evidence, margin) is then a cheap choice over the cache, the same
arithmetic as `SentenceBank.choose` (tests/test_sentence_bank.py checks they agree).

    python scripts/eval_bank.py --set val --shortlist 10,25,50 --prior 0,0.5,1 --evidence 0,2 --margin -0.5,0,0.5
    python scripts/eval_bank.py --set coco --shortlist 25 --prior 0.5 --evidence 2 --margin 0
    python scripts/eval_bank.py --set val --show 10 --shortlist 25 --prior 0.5 --evidence 2 --margin 0

Measures: BLEU-4 and CIDEr (COCO tools, as `captioner evaluate`), CHAIR-s and broken sentences (the
`captioner.evaluation.hallucination` / `broken`), the share of captions from the bank.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import eval_cache as data
import numpy as np
import torch

from captioner.bank.runtime import load_for
from captioner.bank.scoring import sentence_likelihood
from captioner.bank.store import BANK_FILE
from captioner.evaluation.metrics import score_captions
from captioner.model.folder import default_model_dir

CACHE = data.ROOT / "runs" / "bank"


BASE: str | None = None  # --base: a decoding.json for the generated captions (default: the model's)


def default_decoding(cap):
    """The decoding with the bank off whose captions the bank competes with: the model's, or `--base`'s."""
    from captioner.decoding.config import DecodingConfig

    base = DecodingConfig.load(BASE) if BASE else cap.decoding
    return base.replace(bank_shortlist=0)


def bank_cache(name: str, cap, bank, kmax: int, limit: int = 0, only_unsure: float = 0.0) -> dict:
    """Per photo: shortlist indices, first-stage scores, likelihoods; the generated caption's tokens, score,
    first stage and prior. Cached by set, kmax, bank file and decoding. `only_unsure` < 0: photos whose
    generated caption scores at least this per token are not scored (-inf: they never take a bank sentence,
    as with `bank_unsure` at that value or above)."""
    decoding = default_decoding(cap)
    records = data.decode_pass(name, decoding, cap)
    records = records[:limit] if limit else records
    bank_hash = hashlib.sha256((Path(default_model_dir()) / BANK_FILE).read_bytes()).hexdigest()[:8]
    settings = {k: v for k, v in decoding.to_dict().items() if not k.startswith("bank_")}  # the generated captions'
    dec_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    path = CACHE / name / f"cache-k{kmax}-n{len(records)}-{bank_hash}-{dec_hash}{f'-u{only_unsure}' if only_unsure else ''}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        out = {k: z[k] for k in z.files}
        out["records"] = records
        return out
    ids, grids = data.grids(name, cap)
    ids = ids[: len(records)]
    scorer = bank.scorer(cap.model.decoder)
    vocab = cap.model.vocab
    n = len(ids)
    index = np.zeros((n, kmax), np.int64)
    first = np.zeros((n, kmax), np.float32)
    ll = np.zeros((n, kmax), np.float32)
    gen_norm, gen_first, gen_prior = (np.zeros(n, np.float32) for _ in range(3))
    done = 0  # a cache of the set's first photos is extended, not recomputed
    for old in path.parent.glob(f"cache-k{kmax}-n*-{bank_hash}-{dec_hash}.npz") if not only_unsure else ():
        m = int(old.name.split("-")[2][1:])
        if done < m < n:
            z = np.load(old)
            for key, arr in (("index", index), ("first", first), ("ll", ll), ("gen_norm", gen_norm),
                             ("gen_first", gen_first), ("gen_prior", gen_prior)):
                arr[:m] = z[key]
            done = m
    for s in range(done, n, 50):
        g = torch.from_numpy(np.array(grids[s : min(n, s + 50)], dtype=np.float32))
        g = g.reshape(g.shape[0], -1, g.shape[-1])
        idx, fs = bank.shortlist(g, kmax)
        photo_vec = bank.photo_vectors(g)
        for j in range(len(g)):
            i = s + j
            index[i], first[i] = idx[j].numpy(), fs[j].numpy()
            cand = records[i]["candidates"][0]
            gen_norm[i] = cand["score"] / cand["n_ids"]
            if only_unsure and gen_norm[i] >= only_unsure:
                ll[i] = -np.inf
                continue
            ll[i] = sentence_likelihood(scorer, g[j], bank.tokens[idx[j]], vocab.start_id, vocab.end_id)
            row = bank.generated_tokens([vocab.stoi.get(w, vocab.unk_id) for w in cand["tokens"]])
            gen_first[i] = float(photo_vec[j] @ bank.text_vectors(row)[0])
            gen_prior[i] = sentence_likelihood(scorer, bank.mean_grid, row, vocab.start_id, vocab.end_id)[0]
        print(f"{name} bank cache: {s + len(g)}/{n}", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, index=index, first=first, ll=ll, gen_norm=gen_norm, gen_first=gen_first, gen_prior=gen_prior)
    return {"index": index, "first": first, "ll": ll, "gen_norm": gen_norm, "gen_first": gen_first,
            "gen_prior": gen_prior, "records": records}


def support_deficits(name: str, cap, bank, c: dict, minimum: float) -> tuple[np.ndarray, np.ndarray]:
    """((n, kmax) each shortlisted sentence's mean support deficit, (n,) the generated caption's), as
    `runtime.with_bank` computes them (zeros when the model folder has no support head)."""
    from captioner.bank.runtime import mean_deficit, support_deficit

    n, kmax = c["ll"].shape
    out, gen = np.zeros((n, kmax), np.float32), np.zeros(n, np.float32)
    support = cap.support
    if support is None:
        return out, gen
    _, grids = data.grids(name, cap)
    vocab = cap.model.vocab
    for s in range(0, n, 100):
        g = torch.from_numpy(np.array(grids[s : min(n, s + 100)], dtype=np.float32))
        deficit = support_deficit(support, support.presence(g, cap.tagger.word_probabilities(g)), vocab, minimum)
        if deficit is None:
            continue
        for j in range(len(g)):
            i = s + j
            out[i] = mean_deficit(deficit[j], bank.tokens[torch.from_numpy(c["index"][i])])
            toks = c["records"][i]["candidates"][0]["tokens"]
            gen[i] = mean_deficit(deficit[j], bank.generated_tokens([vocab.stoi.get(w, vocab.unk_id) for w in toks]))[0]
    return out, gen


def choose(c: dict, prior: np.ndarray, k: int, lam: float, w: float, margin: float, support: float = 0.0,
           deficits: tuple[np.ndarray, np.ndarray] | None = None, unsure: float = 0.0):
    """(bank row per photo, chosen per photo): `SentenceBank.choose`'s rule over the cache."""
    idx = c["index"][:, :k]
    score = c["ll"][:, :k] - lam * prior[idx] + w * c["first"][:, :k]
    gen = c["gen_norm"] - lam * c["gen_prior"] + w * c["gen_first"]
    if support and deficits is not None:
        score = score - support * deficits[0][:, :k]
        gen = gen - support * deficits[1]
    best = score.argmax(axis=1)
    rows = np.arange(len(idx))
    asked = c["gen_norm"] < unsure if unsure else np.ones(len(idx), bool)
    return idx[rows, best], (score[rows, best] > gen + margin) & asked


def measure(captions: dict[str, str], refs: dict, broken: bool) -> dict:
    s = score_captions(captions, {i: refs[i] for i in captions}, metrics=("bleu4", "cider"))
    out = {"bleu4": round(s["bleu4"], 2), "cider": round(s["cider"], 2)}
    try:
        from captioner.evaluation.hallucination import hallucination_scores

        h = hallucination_scores((captions[i], refs[i]) for i in captions)
        out["chair_s"], out["chair_i"], out["recall"] = round(h.chair_s, 1), round(h.chair_i, 1), round(h.recall, 1)
    except ImportError:
        pass
    if broken:
        try:
            from captioner.evaluation.broken import count_broken

            out["broken"] = count_broken(list(captions.values()))[0]
        except Exception as exc:  # noqa: BLE001 - spaCy missing: the column stays empty
            print(f"broken sentences not counted: {exc}", file=sys.stderr)
    return out


def latency(cap, settings: dict, n: int) -> dict:
    """Single-photo latency at beam 3 through `Captioner.caption`, the default decoding and the bank's
    settings alternating photo by photo (n Flickr8k test photos and n coco-dev photos), each photo's file
    opened, preprocessed, encoded and decoded; medians and their ratio."""
    import os
    import statistics
    import time

    paths = [p for name in ("test", "coco") for p in data.load_set(name)[1][:n]]
    base = default_decoding(cap).replace(beam_size=3)
    banked = base.replace(**settings)
    cap.caption(str(paths[0]), banked)  # loads the bank, the tagger and the ONNX sessions
    times = {"default": [], "bank": []}
    for p in paths:
        for key, decoding in (("default", base), ("bank", banked)):
            t = time.perf_counter()
            cap.caption(str(p), decoding)
            times[key].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"photos": len(paths), "default_ms": round(1000 * med["default"], 1), "bank_ms": round(1000 * med["bank"], 1),
            "ratio": round(med["bank"] / med["default"], 3), "loadavg": os.getloadavg()[0]}


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="val", choices=("val", "test", "coco"))
    ap.add_argument("--kmax", type=int, default=20)
    ap.add_argument("--limit", type=int, default=0, help="only the first this many photos of the set (0: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--shortlist", default="25")
    ap.add_argument("--prior", default="0")
    ap.add_argument("--evidence", default="0")
    ap.add_argument("--margin", default="0")
    ap.add_argument("--support", default="0", help="bank_support values")
    ap.add_argument("--unsure", default="0", help="bank_unsure values")
    ap.add_argument("--only-unsure", type=float, default=0.0,
                    help="score only photos whose generated caption is below this per token (a cheaper cache for "
                         "settings with bank_unsure at most this)")
    ap.add_argument("--support-min", type=float, default=None, help="support_min (default: the model's)")
    ap.add_argument("--broken", action="store_true", help="count broken sentences (spaCy; slower)")
    ap.add_argument("--show", type=int, default=0, help="print this many photos whose caption the bank replaced")
    ap.add_argument("--json", help="append the rows to this JSON-lines file")
    ap.add_argument("--latency", type=int, default=0,
                    help="time single photos (this many Flickr8k test and coco-dev photos) at beam 3, the default "
                         "decoding against the first bank setting given, side by side, and stop")
    ap.add_argument("--base", help="a decoding.json whose captions the bank competes with (default: the model's)")
    args = ap.parse_args(argv)
    global BASE
    BASE = args.base

    torch.set_num_threads(args.threads)  # latency too: both decodings alike, on a shared machine
    cap = data.captioner()
    if args.latency:
        settings = {"bank_shortlist": int(args.shortlist.split(",")[0]), "bank_prior": floats(args.prior)[0],
                    "bank_evidence": floats(args.evidence)[0], "bank_margin": floats(args.margin)[0],
                    "bank_support": floats(args.support)[0], "bank_unsure": floats(args.unsure)[0]}
        print(json.dumps({**settings, **latency(cap, settings, args.latency)}))
        return
    bank = load_for(default_model_dir(), cap.model)
    if bank is None:
        raise SystemExit(f"no usable {BANK_FILE} beside the weights: run scripts/build_sentence_bank.py")
    c = bank_cache(args.set, cap, bank, args.kmax, args.limit, args.only_unsure)
    ids, _, refs = data.load_set(args.set)
    ids = ids[: len(c["ll"])]
    generated = {r["id"]: " ".join(r["candidates"][0]["tokens"]) for r in c["records"][: len(ids)]}
    rows = [{"setting": "generated (default)", "bank_share": 0.0, **measure(generated, refs, args.broken)}]
    print(json.dumps(rows[0]), flush=True)
    vocab = cap.model.vocab
    minimum = cap.decoding.support_min if args.support_min is None else args.support_min
    deficits = support_deficits(args.set, cap, bank, c, minimum) if any(floats(args.support)) else None
    for k, lam, w, margin, sup, unsure in itertools.product(
            [int(x) for x in args.shortlist.split(",")], floats(args.prior), floats(args.evidence),
            floats(args.margin), floats(args.support), floats(args.unsure)):
        pick, chosen = choose(c, bank.prior, min(k, args.kmax), lam, w, margin, sup, deficits, unsure)
        caps = {i: (" ".join(bank.data.words(int(pick[n]), vocab)) if chosen[n] else generated[i])
                for n, i in enumerate(ids)}
        row = {"setting": f"bank k={k} prior={lam} evidence={w} margin={margin} support={sup} unsure={unsure}",
               "bank_shortlist": k, "bank_prior": lam, "bank_evidence": w, "bank_margin": margin, "bank_support": sup,
               "bank_unsure": unsure,
               "bank_share": round(float(chosen.mean()), 3), **measure(caps, refs, args.broken)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.show:
            for n in np.flatnonzero(chosen)[: args.show]:
                print(f"  {ids[n]}: {generated[ids[n]]!r} -> {caps[ids[n]]!r}")
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps({"set": args.set, **row}) + "\n")


if __name__ == "__main__":
    main()
