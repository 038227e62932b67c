"""A description as the decoder reads it for find-by-description (`QueryTokens`): the same tokenisation as
training, with the words the model does not know marked. Imports neither torch nor numpy."""
from __future__ import annotations

from dataclasses import dataclass

from captioner.model.vocab import Vocab, tokenize


@dataclass(frozen=True)
class QueryTokens:
    """A description as the decoder reads it."""

    text: str
    ids: tuple[int, ...]        # <start> w1 .. wn <end>
    scored: tuple[bool, ...]    # per predicted token (ids[1:]): counted in the score (False for <unk>)
    unknown: tuple[str, ...]    # words the model does not know, in order, once each

    @property
    def n_scored(self) -> int:
        return sum(self.scored)

    @property
    def usable(self) -> bool:
        """At least one known word (a text of unknown words only scores nothing but `<end>`)."""
        return self.n_scored > 1


def query_tokens(vocab: Vocab, text: str, max_len: int = 30) -> QueryTokens:
    """Tokenise `text` as training did (`Vocab.encode`), marking the words the model does not know."""
    words = tokenize(text)[:max_len]
    ids = tuple(vocab.encode(" ".join(words)))
    unknown = tuple(dict.fromkeys(w for w in words if w not in vocab.stoi))
    scored = tuple(i != vocab.unk_id for i in ids[1:])
    return QueryTokens(text, ids, scored, unknown)
