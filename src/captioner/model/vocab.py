"""Vocabulary: tokenising captions, special tokens, JSON save/load."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case a caption and split it into word tokens (punctuation dropped)."""
    return _TOKEN_RE.findall(text.lower())


class Vocab:
    """Maps words to ids and back. Ids 0..3 are `<pad>`, `<start>`, `<end>`, `<unk>`."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if list(words[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIALS}")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary may not list a word twice")
        self.itos = words
        self.stoi = {w: i for i, w in enumerate(words)}

    pad_id = property(lambda self: self.stoi[PAD])
    start_id = property(lambda self: self.stoi[START])
    end_id = property(lambda self: self.stoi[END])
    unk_id = property(lambda self: self.stoi[UNK])

    @property
    def special_ids(self) -> list[int]:
        return [self.stoi[t] for t in SPECIALS]

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, captions: Iterable[str], min_freq: int = 5) -> Vocab:
        """Build from training captions, keeping words seen at least `min_freq` times."""
        counts = Counter(tok for c in captions for tok in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + [w for w in kept if w not in SPECIALS])

    def encode(self, caption: str, max_len: int | None = None) -> list[int]:
        """`<start> w1 .. wn <end>` as ids; words beyond `max_len` are cut."""
        toks = tokenize(caption)
        if max_len is not None:
            toks = toks[:max_len]
        return [self.start_id] + [self.stoi.get(t, self.unk_id) for t in toks] + [self.end_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to words, stopping at `<end>` and skipping other special tokens."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            out.append(self.itos[i])
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"itos": self.itos}, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError(f"{path} is not a vocabulary file (expected a JSON object with 'itos')")
        return cls(data["itos"])
