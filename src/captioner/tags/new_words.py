"""Words the decoder's vocabulary lacks (`zebra`, `broccoli`, `sink`, `clock`, ...), added at decode
time for photos tagged with them.

The decoder was trained on Flickr8k (2,538 words) and cannot emit a word it never saw. A model folder
may hold `new_words.json` (built by `scripts/build_new_words.py`): for each new word, the in-vocabulary
words closest to it in meaning (its proxies, e.g. `zebra` <- `horse`). At decode time:

- `extend_vocab` appends the new words after the model's own ids (a `Vocab` view; the model folder,
  its weights and saved galleries are untouched);
- `ExtendedStepDecoder` gives each new word the log-probability of its likeliest proxy, and feeds the
  first proxy's embedding back into the decoder after a new word was emitted (an embedding and
  output row transferred from a related word, without changing the weights); a new word never
  follows the wrong article (`a owl`, `an zebra`);
- grounded decoding (`captioner.tags.grounding.tag_bonus`) bans every new word (-inf) except for a
  photo with that word as a confident tag, where it gets the tag bonus like an in-vocabulary tag word.

So a photo without such a tag is decoded exactly as before, and the extension costs nothing when
grounded decoding is off. Importing this module does not import torch: the PyTorch path and the numpy one
(`captioner.runtime.lean`) use the same code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from captioner.decoding.arrays import arrays_of
from captioner.decoding.step_decoder import StepWrapper
from captioner.model.config import load_optional
from captioner.model.vocab import Vocab

NEW_WORDS_FILE = "new_words.json"


@dataclass(frozen=True)
class NewWords:
    """`words[i]` is generated from the log-probabilities of `proxies[i]` (in-vocabulary words, most
    related first)."""

    words: tuple[str, ...]
    proxies: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        if len(self.words) != len(self.proxies) or any(not p for p in self.proxies):
            raise ValueError("each new word needs at least one proxy word")
        if len(set(self.words)) != len(self.words):
            raise ValueError("a new word is listed twice")

    @classmethod
    def from_dict(cls, data: dict) -> NewWords:
        entries = data["words"]
        return cls(tuple(str(e["word"]) for e in entries), tuple(tuple(str(p) for p in e["proxies"]) for e in entries))

    @classmethod
    def load(cls, folder: str | Path | None) -> NewWords | None:
        """The new words of a model folder, or None when it has none (or an unreadable file: the model
        then keeps its own vocabulary)."""
        return load_optional(folder, NEW_WORDS_FILE, cls.from_dict)

    def usable(self, vocab: Vocab) -> NewWords:
        """Only the entries that are new to `vocab` and have a proxy in it (their proxies filtered)."""
        words, proxies = [], []
        for w, ps in zip(self.words, self.proxies):
            kept = tuple(p for p in ps if p in vocab.stoi)
            if w not in vocab.stoi and kept:
                words.append(w)
                proxies.append(kept)
        return NewWords(tuple(words), tuple(proxies))


def extend_vocab(vocab: Vocab, new: NewWords) -> Vocab:
    """`vocab` with the new words appended (ids from `len(vocab)` on)."""
    return Vocab(list(vocab.itos) + list(new.words))


class ExtendedStepDecoder(StepWrapper):
    """A `StepDecoder` over `extend_vocab`'s ids, wrapping one over the model's own vocabulary; on torch
    tensors or numpy arrays, as the wrapped decoder gives (`captioner.decoding.arrays`)."""

    def __init__(self, decoder, vocab: Vocab, new: NewWords, active: list[int] | None = None, no_echo: bool = False):
        """`active`: the new words (indexes into `new.words`) that may be generated in this search; the
        others get -inf without being computed (grounded decoding bans every new word that is no
        confident tag of a photo of the batch, so the captions are the same; default: all). `no_echo`
        (`DecodingConfig.no_echo`): no new word right after one of its own proxies ("a coffee espresso",
        "a kitchen microwave") or after another new word: it would stand where its proxy fits, not itself."""
        self.inner, self.base_size = decoder, len(vocab)
        self.vocab_size = self.base_size + len(new.words)
        width = max(len(p) for p in new.proxies)
        # (K, width): each new word's proxies, padded with the first
        self._proxy_ids = [[vocab.stoi[p] for p in ps] + [vocab.stoi[ps[0]]] * (width - len(ps)) for ps in new.proxies]
        self._active = list(range(len(new.words))) if active is None else list(active)
        # English articles: no "a" before a new word that starts with a vowel, no "an" before one that does not
        vowel = [new.words[i][0] in "aeiou" for i in self._active]
        self._article_ban = {vocab.stoi[a]: ban for a, ban in (("a", vowel), ("an", [not v for v in vowel]))
                             if a in vocab.stoi and any(ban)}
        # (word id, active index) pairs: each active new word's own proxies (with `no_echo`)
        self._after = [(vocab.stoi[p], j) for j, k in enumerate(self._active) for p in new.proxies[k]] if no_echo else None
        self._place = None  # (the array operations, the device) the arrays below were made for

    def _arrays_for(self, words) -> None:
        xp = arrays_of(words)
        place = (xp, getattr(words, "device", None))
        if place == self._place:
            return
        self._place = place
        # the word fed back in after each id: itself, or a new word's first proxy
        self.input_ids = xp.asarray(list(range(self.base_size)) + [p[0] for p in self._proxy_ids], words, "long")
        self.active = xp.asarray(self._active, words, "long")
        self.active_proxies = xp.asarray([self._proxy_ids[k] for k in self._active], words, "long")  # (A, width)
        self.article_ban = {a: xp.asarray(ban, words, "bool") for a, ban in self._article_ban.items()}
        self.after_ban = None
        if self._after is not None:
            after = xp.full((self.vocab_size, len(self._active)), False, words, "bool")
            for row, j in self._after:
                after[row, j] = True
            after[self.base_size :] = True
            self.after_ban = after

    def step(self, features, projected, words, h, c):
        self._arrays_for(words)
        xp = self._place[0]
        logp, h, c, alpha = self.inner.step(features, projected, self.input_ids[words], h, c)
        # each active new word as likely as its likeliest proxy; the others -inf
        likely = xp.amax(logp[:, self.active_proxies], -1)  # (R, A)
        if self.after_ban is not None:
            likely = xp.where(self.after_ban[words], float("-inf"), likely)
        for article, ban in self.article_ban.items():
            after = words == article
            if bool(after.any()):
                likely = xp.where(after[:, None] & ban[None, :], float("-inf"), likely)
        out = xp.full((logp.shape[0], self.vocab_size), float("-inf"), logp, logp.dtype)
        out[:, : self.base_size] = logp
        out[:, self.base_size + self.active] = likely
        return out, h, c, alpha
