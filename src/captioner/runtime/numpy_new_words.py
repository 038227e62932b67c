"""Words the vocabulary lacks, added at decode time for photos tagged with them, in numpy
(`captioner.tags.new_words`): the model folder's `new_words.json` read without torch, the vocabulary
extended, and `ExtendedStepDecoder` giving each new word its likeliest proxy's log-probability. Importing
this module imports neither torch nor onnx."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from captioner.model.vocab import Vocab

NEW_WORDS_FILE = "new_words.json"
NEG_INF = np.float32(-np.inf)


def load_new_words(folder: str | Path) -> list[tuple[str, tuple[str, ...]]] | None:
    """(word, proxies) of the folder's `new_words.json`, or None (no file, or one that cannot be read)."""
    try:
        data = json.loads((Path(folder) / NEW_WORDS_FILE).read_text(encoding="utf-8"))
        return [(str(e["word"]), tuple(str(p) for p in e["proxies"])) for e in data["words"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def usable(entries, vocab: Vocab) -> list[tuple[str, tuple[str, ...]]]:
    """`NewWords.usable`: the entries new to `vocab` with a proxy in it (their proxies filtered)."""
    out = []
    for w, ps in entries:
        kept = tuple(p for p in ps if p in vocab.stoi)
        if w not in vocab.stoi and kept:
            out.append((w, kept))
    return out


def extend_vocab(vocab: Vocab, new) -> Vocab:
    return Vocab(list(vocab.itos) + [w for w, _ in new])


class ExtendedStepDecoder:
    """`captioner.tags.new_words.ExtendedStepDecoder` on numpy arrays."""

    def __init__(self, decoder, vocab: Vocab, new, active: list[int] | None = None, no_echo: bool = False):
        words, proxies = [w for w, _ in new], [ps for _, ps in new]
        self.decoder, self.base_size = decoder, len(vocab)
        width = max(len(p) for p in proxies)
        self.proxy_ids = np.array([[vocab.stoi[p] for p in ps] + [vocab.stoi[ps[0]]] * (width - len(ps))
                                   for ps in proxies], dtype=np.int64)
        self.input_ids = np.concatenate([np.arange(self.base_size), self.proxy_ids[:, 0]])
        self.vocab_size = self.base_size + len(words)
        self.active = np.arange(len(words)) if active is None else np.array(active, dtype=np.int64)
        self.active_proxies = self.proxy_ids[self.active]
        vowel = np.array([words[i][0] in "aeiou" for i in self.active.tolist()], dtype=bool)
        self.article_ban = {vocab.stoi[a]: ban for a, ban in (("a", vowel), ("an", ~vowel))
                            if a in vocab.stoi and ban.any()}
        after = np.zeros((self.vocab_size, len(self.active)), dtype=bool)
        for j, k in enumerate(self.active.tolist()):
            after[[vocab.stoi[p] for p in proxies[k]], j] = True
        after[self.base_size:] = True
        self.after_ban = after if no_echo else None

    def flatten(self, features):
        return self.decoder.flatten(features)

    def project(self, features):
        return self.decoder.project(features)

    def init_state(self, features):
        return self.decoder.init_state(features)

    def step(self, features, projected, words, h, c):
        logp, h, c, alpha = self.decoder.step(features, projected, self.input_ids[words], h, c)
        likely = logp[:, self.active_proxies].max(-1)
        if self.after_ban is not None:
            likely = np.where(self.after_ban[words], NEG_INF, likely)
        for article, ban in self.article_ban.items():
            after = words == article
            if after.any():
                likely = np.where(after[:, None] & ban[None, :], NEG_INF, likely)
        out = np.full((logp.shape[0], self.vocab_size), NEG_INF, dtype=np.float32)
        out[:, : self.base_size] = logp
        out[:, self.base_size + self.active] = likely
        return out, h, c, alpha
