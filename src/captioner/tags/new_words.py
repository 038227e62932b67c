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
grounded decoding is off.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

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


class ExtendedStepDecoder:
    """A `StepDecoder` over `extend_vocab`'s ids, wrapping one over the model's own vocabulary."""

    def __init__(self, decoder, vocab: Vocab, new: NewWords, active: list[int] | None = None, no_echo: bool = False):
        """`active`: the new words (indexes into `new.words`) that may be generated in this search; the
        others get -inf without being computed (grounded decoding bans every new word that is no
        confident tag of a photo of the batch, so the captions are the same; default: all). `no_echo`
        (`DecodingConfig.no_echo`): no new word right after one of its own proxies ("a coffee espresso",
        "a kitchen microwave") or after another new word: it would stand where its proxy fits, not itself."""
        self.decoder, self.base_size = decoder, len(vocab)
        width = max(len(p) for p in new.proxies)
        ids = [[vocab.stoi[p] for p in ps] + [vocab.stoi[ps[0]]] * (width - len(ps)) for ps in new.proxies]
        self.proxy_ids = torch.tensor(ids, dtype=torch.long)  # (K, width), padded with the first proxy
        # the word fed back in after each id: itself, or a new word's first proxy
        self.input_ids = torch.cat([torch.arange(self.base_size), self.proxy_ids[:, 0]])
        self.vocab_size = self.base_size + len(new.words)
        self.active = torch.arange(len(new.words)) if active is None else torch.tensor(active, dtype=torch.long)
        self.active_proxies = self.proxy_ids[self.active]  # (A, width)
        # English articles: no "a" before a new word that starts with a vowel, no "an" before one that does not
        vowel = torch.tensor([new.words[i][0] in "aeiou" for i in self.active.tolist()], dtype=torch.bool)
        self.article_ban = {vocab.stoi[a]: ban for a, ban in (("a", vowel), ("an", ~vowel))
                            if a in vocab.stoi and bool(ban.any())}
        after = torch.zeros(self.vocab_size, len(self.active), dtype=torch.bool)
        for j, k in enumerate(self.active.tolist()):
            after[[vocab.stoi[p] for p in new.proxies[k]], j] = True
        after[self.base_size :] = True
        self.after_ban = after if no_echo else None

    def flatten(self, features):
        return self.decoder.flatten(features)

    def project(self, features):
        return self.decoder.project(features)

    def init_state(self, features):
        return self.decoder.init_state(features)

    def step(self, features, projected, words, h, c):
        if self.input_ids.device != words.device:
            self.input_ids, self.active = self.input_ids.to(words.device), self.active.to(words.device)
            self.active_proxies = self.active_proxies.to(words.device)
            self.article_ban = {a: ban.to(words.device) for a, ban in self.article_ban.items()}
            self.after_ban = None if self.after_ban is None else self.after_ban.to(words.device)
        logp, h, c, alpha = self.decoder.step(features, projected, self.input_ids[words], h, c)
        # each active new word as likely as its likeliest proxy; the others -inf
        likely = logp[:, self.active_proxies].amax(-1)  # (R, A)
        if self.after_ban is not None:
            likely = likely.masked_fill(self.after_ban[words], float("-inf"))
        for article, ban in self.article_ban.items():
            after = words == article
            if bool(after.any()):
                likely = likely.masked_fill(after.unsqueeze(1) & ban.unsqueeze(0), float("-inf"))
        out = logp.new_full((logp.shape[0], self.vocab_size), float("-inf"))
        out[:, : self.base_size] = logp
        out[:, self.base_size + self.active] = likely
        return out, h, c, alpha
