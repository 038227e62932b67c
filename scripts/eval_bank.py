"""The sentence bank (issue 28): settings chosen on Flickr8k val, checked on coco-dev, Flickr8k test once
per candidate to ship. Every expensive pass is cached under runs/bank/<set>/ (encoder grids and the
default decoding come from scripts/issue13_data.py's cache).

For each photo the cache holds the `--kmax` bank sentences the first stage ranks highest, their
first-stage scores and teacher-forced likelihoods, and the generated caption's own first-stage score and
prior; a setting (shortlist, prior, evidence, margin) is then a cheap choice over the cache, the same
arithmetic as `SentenceBank.choose` (tests/test_sentence_bank.py checks they agree).

    python scripts/eval_bank.py --set val --shortlist 10,25,50 --prior 0,0.5,1 --evidence 0,2 --margin -0.5,0,0.5
    python scripts/eval_bank.py --set coco --shortlist 25 --prior 0.5 --evidence 2 --margin 0
    python scripts/eval_bank.py --set val --show 10 --shortlist 25 --prior 0.5 --evidence 2 --margin 0

Measures: BLEU-4 and CIDEr (COCO tools, as `captioner evaluate`), CHAIR-s and broken sentences (the
hallucination issue's `captioner.evaluation.hallucination` / `broken`), the share of captions from the bank.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import issue13_data as data  # noqa: E402

from captioner.bank.runtime import load_for  # noqa: E402
from captioner.bank.scoring import sentence_likelihood  # noqa: E402
from captioner.bank.store import BANK_FILE  # noqa: E402
from captioner.evaluation.metrics import score_captions  # noqa: E402
from captioner.model.folder import default_model_dir  # noqa: E402

CACHE = data.ROOT / "runs" / "bank"


def default_decoding(cap):
    """The shipped decoding with the bank off (the generated captions the bank competes with)."""
    return cap.decoding.replace(bank_shortlist=0) if hasattr(cap.decoding, "bank_shortlist") else cap.decoding


def bank_cache(name: str, cap, bank, kmax: int) -> dict:
    """Per photo: shortlist indices, first-stage scores, likelihoods; the generated caption's tokens, score,
    first stage and prior. Cached by set, kmax, bank file and decoding."""
    decoding = default_decoding(cap)
    records = data.decode_pass(name, decoding, cap)
    bank_hash = hashlib.sha256((Path(default_model_dir()) / BANK_FILE).read_bytes()).hexdigest()[:8]
    dec_hash = hashlib.sha256(json.dumps(decoding.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    path = CACHE / name / f"cache-k{kmax}-{bank_hash}-{dec_hash}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        out = {k: z[k] for k in z.files}
        out["records"] = records
        return out
    ids, grids = data.grids(name, cap)
    scorer = bank.scorer(cap.model.decoder)
    vocab = cap.model.vocab
    n = len(ids)
    index = np.zeros((n, kmax), np.int64)
    first = np.zeros((n, kmax), np.float32)
    ll = np.zeros((n, kmax), np.float32)
    gen_norm, gen_first, gen_prior = (np.zeros(n, np.float32) for _ in range(3))
    for s in range(0, n, 50):
        g = torch.from_numpy(np.array(grids[s : s + 50], dtype=np.float32))
        g = g.reshape(g.shape[0], -1, g.shape[-1])
        idx, fs = bank.shortlist(g, kmax)
        photo_vec = bank.photo_vectors(g)
        for j in range(len(g)):
            i = s + j
            index[i], first[i] = idx[j].numpy(), fs[j].numpy()
            ll[i] = sentence_likelihood(scorer, g[j], bank.tokens[idx[j]], vocab.start_id, vocab.end_id)
            cand = records[i]["candidates"][0]
            gen_norm[i] = cand["score"] / cand["n_ids"]
            row = bank.generated_tokens([vocab.stoi.get(w, vocab.unk_id) for w in cand["tokens"]])
            gen_first[i] = float(photo_vec[j] @ bank.text_vectors(row)[0])
            gen_prior[i] = sentence_likelihood(scorer, bank.mean_grid, row, vocab.start_id, vocab.end_id)[0]
        print(f"{name} bank cache: {s + len(g)}/{n}", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, index=index, first=first, ll=ll, gen_norm=gen_norm, gen_first=gen_first, gen_prior=gen_prior)
    return {"index": index, "first": first, "ll": ll, "gen_norm": gen_norm, "gen_first": gen_first,
            "gen_prior": gen_prior, "records": records}


def choose(c: dict, prior: np.ndarray, k: int, lam: float, w: float, margin: float):
    """(bank row per photo, chosen per photo): `SentenceBank.choose`'s rule over the cache."""
    idx = c["index"][:, :k]
    score = c["ll"][:, :k] - lam * prior[idx] + w * c["first"][:, :k]
    best = score.argmax(axis=1)
    rows = np.arange(len(idx))
    gen = c["gen_norm"] - lam * c["gen_prior"] + w * c["gen_first"]
    return idx[rows, best], score[rows, best] > gen + margin


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


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="val", choices=("val", "test", "coco"))
    ap.add_argument("--kmax", type=int, default=50)
    ap.add_argument("--shortlist", default="25")
    ap.add_argument("--prior", default="0")
    ap.add_argument("--evidence", default="0")
    ap.add_argument("--margin", default="0")
    ap.add_argument("--broken", action="store_true", help="count broken sentences (spaCy; slower)")
    ap.add_argument("--show", type=int, default=0, help="print this many photos whose caption the bank replaced")
    ap.add_argument("--json", help="append the rows to this JSON-lines file")
    args = ap.parse_args(argv)

    cap = data.captioner()
    bank = load_for(default_model_dir(), cap.model)
    if bank is None:
        raise SystemExit(f"no usable {BANK_FILE} beside the weights: run scripts/build_sentence_bank.py")
    c = bank_cache(args.set, cap, bank, args.kmax)
    ids, _, refs = data.load_set(args.set)
    generated = {r["id"]: " ".join(r["candidates"][0]["tokens"]) for r in c["records"]}
    rows = [{"setting": "generated (default)", "bank_share": 0.0, **measure(generated, refs, args.broken)}]
    print(json.dumps(rows[0]), flush=True)
    vocab = cap.model.vocab
    for k, lam, w, margin in itertools.product([int(x) for x in args.shortlist.split(",")], floats(args.prior),
                                               floats(args.evidence), floats(args.margin)):
        pick, chosen = choose(c, bank.prior, min(k, args.kmax), lam, w, margin)
        caps = {i: (" ".join(bank.data.words(int(pick[n]), vocab)) if chosen[n] else generated[i])
                for n, i in enumerate(ids)}
        row = {"setting": f"bank k={k} prior={lam} evidence={w} margin={margin}",
               "bank_shortlist": k, "bank_prior": lam, "bank_evidence": w, "bank_margin": margin,
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
