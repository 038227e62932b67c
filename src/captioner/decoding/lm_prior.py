"""A language-model prior for beam search: an interpolated Kneser-Ney n-gram model over the decoder's
vocabulary, trained on caption text (`scripts/build_lm_prior.py`: COCO and Flickr30k captions), fused into
the search as `logit += lm_weight * log P_prior(word | previous words)` (shallow fusion), optionally minus
`lm_swap * log P_own(word | ...)`, an n-gram model of Flickr8k's own training captions (the decoder's
prior), so the everyday prior replaces rather than adds to it (`DecodingConfig.lm_weight`, `lm_swap`).

Torch-free (numpy only): the search loop written once for torch and numpy (`captioner.decoding.beams`) adds
`Fusion.term`, so both paths add the same numbers; `unsure_decode` gates the prior by the model's confidence
(`DecodingConfig.lm_unsure`).

File (`lm_prior.npz`, `np.savez_compressed`, no pickles): `words` (the LM's vocabulary as UTF-8 bytes joined by
newlines: the decoder's words, then any new words), and per model `<name>.order`, `<name>.p1` (V,) unigram
probabilities, and for each order k >= 2: `<name>.k<k>.keys` (C,) int64 sorted context keys (the k-1 previous
word ids in base V), `.offsets` (C+1,) int64, `.next` (E,) int32 words seen after each context, `.alpha` (E,)
float32 their discounted probabilities, `.gamma` (C,) float32 the mass left to the lower order. For any
history, P(. | history) sums to 1 over the words the LM can predict (all but `<pad>` and `<start>`).
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FILE_NAME = "lm_prior.npz"
PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"


# ---------------------------------------------------------------------------- the model
class NgramLM:
    """One interpolated Kneser-Ney n-gram model (arrays as described in the module's docstring)."""

    def __init__(self, words: Sequence[str], arrays: dict[str, np.ndarray]):
        self.words = list(words)
        self.stoi = {w: i for i, w in enumerate(self.words)}
        self.V = len(self.words)
        self.order = int(arrays["order"])
        self.p1 = arrays["p1"].astype(np.float64)
        self.levels = [(arrays[f"k{k}.keys"], arrays[f"k{k}.offsets"], arrays[f"k{k}.next"],
                        arrays[f"k{k}.alpha"].astype(np.float64), arrays[f"k{k}.gamma"].astype(np.float64))
                       for k in range(2, self.order + 1)]
        self.start_id = self.stoi[START]

    def histories(self, seqs: np.ndarray) -> np.ndarray:
        """(R, order-1) LM ids of each row's last words, padded with `<start>` on the left."""
        seqs = np.asarray(seqs, dtype=np.int64)
        n = self.order - 1
        pad = np.full((len(seqs), n), self.start_id, dtype=np.int64)
        return np.concatenate([pad, seqs], axis=1)[:, seqs.shape[1]:] if n else pad

    def probs(self, hist: np.ndarray) -> np.ndarray:
        """(R, V) P(word | history) for histories (R, order-1) of LM ids (oldest first)."""
        R = len(hist)
        P = np.tile(self.p1, (R, 1))
        for k, (keys, offsets, nxt, alpha, gamma) in enumerate(self.levels, start=2):
            ctx = hist[:, hist.shape[1] - (k - 1):]
            key = np.zeros(R, dtype=np.int64)
            for j in range(k - 1):
                key = key * self.V + ctx[:, j]
            idx = np.searchsorted(keys, key)
            found = idx < len(keys)
            found[found] &= keys[idx[found]] == key[found]
            rows = np.nonzero(found)[0]
            if not len(rows):
                break  # no longer context can be found either
            ci = idx[rows]
            P[rows] *= gamma[ci][:, None]
            lo, hi = offsets[ci], offsets[ci + 1]
            lens = hi - lo
            entry = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
            P[np.repeat(rows, lens), nxt[entry]] += alpha[entry]
        return P

    def logprobs(self, seqs: np.ndarray) -> np.ndarray:
        """(R, V) log P(next word | each row's words so far), `seqs` (R, t) LM ids (no `<start>`)."""
        with np.errstate(divide="ignore"):
            return np.log(self.probs(self.histories(seqs)))


def load(path: str | Path) -> tuple[list[str], dict[str, NgramLM]]:
    """(the LM vocabulary, {model name: NgramLM}) from an `lm_prior.npz`."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    words = bytes(arrays.pop("words")).decode("utf-8").split("\n")
    names = sorted({k.split(".", 1)[0] for k in arrays})
    return words, {n: NgramLM(words, {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(n + ".")})
                   for n in names}


# ---------------------------------------------------------------------------- fusion into the search
class Fusion:
    """The fusion term for a decoding vocabulary: `term(seqs)` (R, Vd) = lm_weight * log P_prior - lm_swap *
    log P_own for the next word of each row (`seqs` (R, t) decoding ids). Decoding words the LM lacks (words
    appended at decode time that it was not built with), `<pad>` and `<start>` get 0; `<unk>` in a history is the
    LM's `<unk>`."""

    def __init__(self, words: Sequence[str], models: dict[str, NgramLM], vocab_words: Sequence[str],
                 weight: float, swap: float = 0.0):
        self.prior, self.own = models["prior"], models.get("own") if swap > 0 else None
        if swap > 0 and self.own is None:
            from captioner.errors import ConfigError

            raise ConfigError("decoding: lm_swap needs the Flickr8k model ('own') in the LM prior file")
        stoi = {w: i for i, w in enumerate(words)}
        unk = stoi[UNK]
        self.to_lm = np.array([stoi.get(w, unk) for w in vocab_words], dtype=np.int64)
        # words the LM lacks, and those it never predicts (<pad>, <start>: banned anyway), get no term
        self.known = np.array([w in stoi and w not in (PAD, START) for w in vocab_words])
        self.weight, self.swap = float(weight), float(swap)

    def term(self, seqs: np.ndarray) -> np.ndarray:
        hist = self.to_lm[np.asarray(seqs, dtype=np.int64)]
        out = self.weight * self.prior.logprobs(hist)
        if self.own is not None:
            # -inf - -inf is NaN only in the columns of words neither model predicts (<pad>, <start>), which
            # `known` sets to 0 below; numpy need not warn about them on every step
            with np.errstate(invalid="ignore"):
                out -= self.swap * self.own.logprobs(hist)
        out = out[:, self.to_lm]
        out[:, ~self.known] = 0.0
        return out.astype(np.float32)


def default_path() -> Path:
    """Where the prior is read from: $CAPTIONER_LM_PRIOR, else `lm_prior.npz` in the model folder
    ($CAPTIONER_MODEL, else the shipped one)."""
    if os.environ.get("CAPTIONER_LM_PRIOR"):
        return Path(os.environ["CAPTIONER_LM_PRIOR"])
    folder = os.environ.get("CAPTIONER_MODEL") or Path(__file__).resolve().parents[1] / "weights"
    return Path(folder) / FILE_NAME


_loaded: dict = {}


def fusion_for(cfg, vocab) -> Fusion | None:
    """The fusion of a `DecodingConfig` for a decoding vocabulary (anything with `itos`), or None when
    `cfg.lm_weight` is 0. The file (`default_path`) is read once; the vocabulary map is made once per
    vocabulary object."""
    weight, swap = getattr(cfg, "lm_weight", 0.0), getattr(cfg, "lm_swap", 0.0)
    if weight <= 0 and swap <= 0:
        return None
    path = default_path()
    key = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
    if _loaded.get("key") != key:
        if not path.is_file():
            from captioner.errors import ConfigError

            raise ConfigError(f"decoding: lm_weight needs the language-model prior {path} "
                              "(build it with scripts/build_lm_prior.py, or set CAPTIONER_LM_PRIOR)")
        _loaded.clear()
        _loaded.update(key=key, lm=load(path))
    fkey = (id(vocab), len(vocab.itos), weight, swap)
    hit = _loaded.get(fkey)
    if hit is None or hit[0] is not vocab:
        hit = _loaded[fkey] = (vocab, Fusion(*_loaded["lm"], vocab.itos, weight, swap))
    return hit[1]


def unsure_decode(decode, features, decoding, word_probs=None) -> list[list]:
    """`DecodingConfig.lm_unsure`: candidates for each photo without the prior, and, for the photos whose best
    caption's mean log-probability per word is below `lm_unsure` (the model is unsure: likely outside its
    training world), with it. `decode(features, decoding, word_probs)`: the captioner's decoding (torch or numpy
    arrays: only indexed by a list of photos)."""
    plain = decode(features, decoding.replace(lm_weight=0.0, lm_swap=0.0, lm_unsure=0.0), word_probs)
    unsure = [b for b, cands in enumerate(plain) if cands and cands[0].normalized_score < decoding.lm_unsure]
    if unsure:
        fused = decode(features[unsure], decoding.replace(lm_unsure=0.0),
                       None if word_probs is None else word_probs[unsure])
        for b, cands in zip(unsure, fused):
            plain[b] = cands
    return plain


# ---------------------------------------------------------------------------- building (scripts/build_lm_prior.py)
def _discount(counts: Counter) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 + n2 else 0.5


def build(sentences: Iterable[Sequence[int]], words: Sequence[str], order: int = 3,
          min_count: int = 1) -> dict[str, np.ndarray]:
    """An interpolated Kneser-Ney model of `sentences` (lists of LM ids, without `<start>` / `<end>`) over
    `words`; `min_count`: the highest order's n-grams seen fewer times are dropped (their mass goes to
    the lower orders). The arrays of one model, as `NgramLM` reads them."""
    stoi = {w: i for i, w in enumerate(words)}
    V, S, E = len(words), stoi[START], stoi[END]
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for ids in sentences:
        toks = [S] * (order - 1) + list(ids) + [E]
        for i in range(order - 1, len(toks)):
            for k in range(1, order + 1):
                raw[k][tuple(toks[i - k + 1: i + 1])] += 1
    # Kneser-Ney counts: the highest order's raw counts; below it, how many distinct words precede the
    # n-gram (its continuation count), except for n-grams starting at the sentence start (raw counts)
    counts: list[Counter] = [Counter() for _ in range(order + 1)]
    counts[order] = Counter({g: c for g, c in raw[order].items() if c >= min_count}) if min_count > 1 else raw[order]
    for k in range(order - 1, 0, -1):
        cont = Counter(g[1:] for g in counts[k + 1])
        for g, c in raw[k].items():
            if g[0] == S:
                cont[g] = c
        counts[k] = cont
    out: dict[str, np.ndarray] = {"order": np.array(order, dtype=np.int64)}
    predictable = np.ones(V, dtype=bool)
    predictable[[stoi[PAD], S]] = False
    c1 = np.zeros(V)
    for (w,), c in counts[1].items():
        if w != S:
            c1[w] = c
    d1 = _discount(Counter({w: int(c) for w, c in enumerate(c1) if c > 0}))
    total = c1.sum()
    p1 = np.maximum(c1 - d1, 0) / total + d1 * (c1 > 0).sum() / total * predictable / predictable.sum()
    out["p1"] = p1.astype(np.float64)
    for k in range(2, order + 1):
        d = _discount(counts[k])
        by_ctx: dict[int, list[tuple[int, float]]] = {}
        for g, c in counts[k].items():
            key = 0
            for t in g[:-1]:
                key = key * V + t
            by_ctx.setdefault(key, []).append((g[-1], c))
        keys = np.array(sorted(by_ctx), dtype=np.int64)
        offsets, nxt, alpha, gamma = [0], [], [], []
        for key in keys.tolist():
            entries = sorted(by_ctx[key])
            tot = sum(c for _, c in entries)
            nxt.extend(w for w, _ in entries)
            alpha.extend(max(c - d, 0.0) / tot for _, c in entries)
            gamma.append(d * len(entries) / tot)
            offsets.append(len(nxt))
        out.update({f"k{k}.keys": keys, f"k{k}.offsets": np.array(offsets, dtype=np.int64),
                    f"k{k}.next": np.array(nxt, dtype=np.int32), f"k{k}.alpha": np.array(alpha, dtype=np.float32),
                    f"k{k}.gamma": np.array(gamma, dtype=np.float32)})
    return out


def save(path: str | Path, words: Sequence[str], models: dict[str, dict[str, np.ndarray]]) -> None:
    arrays = {"words": np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)}
    for name, arrs in models.items():
        arrays.update({f"{name}.{k}": v for k, v in arrs.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
