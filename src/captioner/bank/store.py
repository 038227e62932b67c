"""The bank file: `sentence_bank.safetensors` beside the model's weights.

Tensors: `tokens` (n, L) int16, each sentence's word ids (no `<start>`/`<end>`), padded with 0 (`<pad>`);
`source` (n,) uint8 (index into the metadata's `sources`); `prior` (n,) float16, each sentence's mean
log-probability per token (words and `<end>`) under the model given the mean Flickr8k training grid (how
likely the captioner finds the sentence whatever the photo; 0 when not computed); `mean_grid` (P, C)
float16, that grid. Metadata: `model_name`, `vocab_size`, `sources` (comma-separated).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.atomic_write import atomic_path

BANK_FILE = "sentence_bank.safetensors"


@dataclass
class BankData:
    tokens: np.ndarray        # (n, L) int16, 0-padded word ids
    source: np.ndarray        # (n,) uint8
    prior: np.ndarray         # (n,) float32
    mean_grid: np.ndarray     # (P, C) float32 (may be empty (0, 0))
    sources: tuple[str, ...] = ("coco", "flickr30k")
    model_name: str = ""
    vocab_size: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> np.ndarray:
        return (self.tokens != 0).sum(axis=1)

    def words(self, i: int, vocab) -> list[str]:
        return [vocab.itos[t] for t in self.tokens[i] if t != 0]


def save_bank(path: str | Path, bank: BankData) -> None:
    from safetensors.numpy import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({"tokens": np.ascontiguousarray(bank.tokens, dtype=np.int16),
                   "source": np.ascontiguousarray(bank.source, dtype=np.uint8),
                   "prior": np.ascontiguousarray(bank.prior, dtype=np.float32).astype(np.float16),
                   "mean_grid": np.ascontiguousarray(bank.mean_grid, dtype=np.float32).astype(np.float16)},
                  str(tmp), metadata={"model_name": bank.model_name, "vocab_size": str(bank.vocab_size),
                                      "sources": ",".join(bank.sources)})


def load_bank(path: str | Path, *, vocab_size: int | None = None, model_name: str | None = None) -> BankData | None:
    """The bank in `path`, or None when it is missing, unreadable or made for another model (read with numpy: no
    torch)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in ("tokens", "source", "prior", "mean_grid")}
    except Exception:  # noqa: BLE001 - missing or damaged: no bank, captions are generated as before
        return None
    bank = BankData(t["tokens"], t["source"], t["prior"].astype(np.float32),
                    t["mean_grid"].astype(np.float32), tuple(meta.get("sources", "coco,flickr30k").split(",")),
                    meta.get("model_name", ""), int(meta.get("vocab_size", 0) or 0))
    if bank.tokens.ndim != 2 or len(bank.source) != len(bank) or len(bank.prior) != len(bank):
        return None
    if vocab_size is not None and (bank.vocab_size != vocab_size or int(bank.tokens.max(initial=0)) >= vocab_size):
        return None
    if model_name is not None and bank.model_name and bank.model_name != model_name:
        return None
    return bank
