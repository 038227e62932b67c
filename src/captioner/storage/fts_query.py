"""Turn free user text into a safe SQLite FTS5 query.

FTS5 has its own query language (``AND``, ``OR``, ``NOT``, ``NEAR``, ``"``,
``*``, ``-``, ``:``, ``(``, ``^``...), so passing user text straight to
``MATCH`` raises syntax errors or silently means something else.  Here the
text is cut into words (runs of letters, digits and combining marks, the
same characters FTS5's ``unicode61`` tokenizer keeps) and every word is
quoted as an FTS5 string, so nothing the user types can act as an operator.
A ``*`` right after a word asks for a prefix search (``"do"*`` finds "dog").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from .errors import GalleryError

#: At most this many words are used; the rest of a very long text is ignored.
MAX_TERMS = 32
#: Longer words are cut; no caption word is this long anyway.
MAX_WORD_CHARS = 64


def words(text: str) -> list[tuple[str, bool]]:
    """Split ``text`` into ``(word, is_prefix)`` pairs, unique, in order.

    A word is a run of characters of Unicode category L (letters), M (marks)
    or N (numbers); everything else separates words.  ``is_prefix`` is true
    when the word is directly followed by ``*``.
    """
    found: list[tuple[str, bool]] = []
    seen: set[tuple[str, bool]] = set()
    current: list[str] = []

    def flush(prefix: bool) -> None:
        if current:
            item = ("".join(current)[:MAX_WORD_CHARS].lower(), prefix)
            if item not in seen:
                seen.add(item)
                found.append(item)
            current.clear()

    for ch in text or "":
        if unicodedata.category(ch)[0] in "LMN":
            current.append(ch)
        else:
            flush(prefix=ch == "*")
            if len(found) >= MAX_TERMS:
                break
    flush(prefix=False)
    return found[:MAX_TERMS]


def to_fts_query(text: str, match_all: bool = True) -> str | None:
    """Return an FTS5 ``MATCH`` expression for ``text``, or None if it has no words.

    ``match_all=True`` joins the quoted words with implicit AND (every word
    must occur); ``match_all=False`` joins them with OR.

    >>> to_fts_query('dogs AND "cats" NEAR( ru*')
    '"dogs" "and" "cats" "near" "ru"*'
    >>> to_fts_query("  -:( ") is None
    True
    """
    terms = [f'"{word}"' + ("*" if prefix else "") for word, prefix in words(text)]
    if not terms:
        return None
    return (" " if match_all else " OR ").join(terms)


# ---------------------------------------------------------------- search language
# What people type into a search box, turned into an FTS5 expression:
#   plain words         every word (implicit AND)           dog lake
#   AND / and / &       both sides                          dog AND lake
#   OR / |              either side                         dog OR cat
#   NOT / -word         leave out items with it             dog NOT lake, dog -lake
#   "quoted phrase"     these words in this order           "red ball"
#   ( ... )             grouping                            (dog OR cat) AND grass
#   word*               prefix                              bicyc*
# Only capital OR and NOT are operators (a lowercase "or"/"not" is a word); "and" in any case
# means AND, which is what every word means anyway.  Each word also matches its irregular forms
# (child/children, man/men, run/ran), the porter tokenizer matching the regular ones
# (dogs/dog, running/run).

_IRREGULAR_GROUPS = """
child children|man men|woman women|person people persons|foot feet|tooth teeth|goose geese
mouse mice|ox oxen|die dice|knife knives|wife wives|life lives|leaf leaves|loaf loaves|wolf wolves
shelf shelves|half halves|calf calves|thief thieves|scarf scarves|cactus cacti|bus buses busses
fish fishes|run runs ran running|sit sits sat sitting|swim swims swam swum swimming
ride rides rode ridden riding|eat eats ate eaten eating|fly flies flew flown flying
throw throws threw thrown throwing|catch catches caught catching|hold holds held holding
stand stands stood standing|lie lies lay lain lying|go goes went gone going|take takes took taken taking
give gives gave given giving|fall falls fell fallen falling|drive drives drove driven driving
bite bites bitten biting|blow blows blew blown blowing|grow grows grew grown growing
draw draws drew drawn drawing|wear wears wore worn wearing|sleep sleeps slept sleeping
sing sings sang sung singing|dig digs dug digging|hang hangs hung hanging|swing swings swung swinging
leap leaps leapt leaped leaping|kneel kneels knelt kneeled kneeling|build builds built building
buy buys bought buying|bring brings brought bringing|fight fights fought fighting|feed feeds fed feeding
lead leads led leading|meet meets met meeting|make makes made making|shoot shoots shot shooting
slide slides slid sliding|spin spins spun spinning|stick sticks stuck sticking|sweep sweeps swept sweeping
teach teaches taught teaching|win wins won winning|write writes wrote written writing
hit hits hitting|get gets got gotten getting|sell sells sold selling|find finds found finding
keep keeps kept keeping|spread spreads spreading|climb climbs climbed climbing
"""
#: word -> its irregular forms (the word itself included), from the groups above.
IRREGULAR: dict[str, tuple[str, ...]] = {}
for _group in _IRREGULAR_GROUPS.replace("\n", "|").split("|"):
    _forms = tuple(_group.split())
    for _form in _forms:
        IRREGULAR[_form] = tuple(dict.fromkeys(IRREGULAR.get(_form, ()) + _forms))
#: Words ending in "man"/"men" that are not a man/men compound (fireman/firemen, policewoman...).
_NOT_MAN_MEN = {"human", "german", "roman", "shaman", "talisman", "ottoman", "caiman", "omen", "amen",
                "semen", "stamen", "specimen", "abdomen", "regimen", "hymen", "yemen"}
#: A phrase expands into at most this many variants (its words' forms combined).
MAX_PHRASE_VARIANTS = 8


def word_forms(word: str) -> tuple[str, ...]:
    """``word`` and its irregular forms: 'child' -> ('child', 'children'), 'firemen' -> (..., 'fireman')."""
    forms = IRREGULAR.get(word, (word,))
    if word not in IRREGULAR and len(word) > 3 and word not in _NOT_MAN_MEN:
        if word.endswith("man"):
            forms = (word, word[:-3] + "men")
        elif word.endswith("men"):
            forms = (word, word[:-3] + "man")
    return forms


class QuerySyntaxError(GalleryError):
    """A search text that asks for nothing: no searchable word, or only words to leave out."""


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search: ``fts`` is the FTS5 ``MATCH`` expression.

    ``plain`` is true for plain words only (no operator, phrase or group): such a search may
    fall back to items with any of the words (``any_fts``).  ``highlight_fts`` matches any word
    or phrase the search looks for (not those it leaves out), for highlighting.
    """

    text: str
    fts: str
    any_fts: str
    highlight_fts: str
    plain: bool
    words: tuple[str, ...]
    #: The text began with ``candidates:``: the beam candidates the user did not pick are searched too.
    candidates: bool = False

    def in_column(self, column: str, fts: str | None = None) -> str:
        """The search (or ``fts``), restricted to one column of the index."""
        return f"{column} : ({self.fts if fts is None else fts})"

    def in_columns(self, columns, fts: str | None = None) -> str:
        """The search (or ``fts``), restricted to ``columns`` of the index: its ``NOT`` too looks only there
        (``dogs NOT grass`` keeps an item whose saved caption has dogs and no grass, whatever its other
        candidates say)."""
        return f"{{{' '.join(columns)}}} : ({self.fts if fts is None else fts})"


# tokens: (kind, value); kind in WORD, PHRASE, AND, OR, NOT, LP, RP
def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            phrase = [w for w, _ in words(text[i + 1:end])]
            if phrase:
                out.append(("PHRASE", phrase))
            i = end + 1
        elif ch == "(":
            out.append(("LP", None))
            i += 1
        elif ch == ")":
            out.append(("RP", None))
            i += 1
        elif ch == "|":
            out.append(("OR", None))
            i += 1
        elif ch == "&":
            out.append(("AND", "explicit"))
            i += 1
        elif ch == "-" and (i == 0 or text[i - 1].isspace() or text[i - 1] == "(") and i + 1 < n \
                and (text[i + 1] in '"(' or unicodedata.category(text[i + 1])[0] in "LMN"):
            out.append(("NOT", None))
            i += 1
        elif unicodedata.category(ch)[0] in "LMN":
            j = i
            while j < n and unicodedata.category(text[j])[0] in "LMN":
                j += 1
            raw = text[i:j]
            prefix = j < n and text[j] == "*"
            if raw in ("AND", "OR", "NOT") and not prefix:
                out.append((raw, "explicit"))
            elif raw.lower() == "and" and not prefix:
                out.append(("AND", None))
            else:
                out.append(("WORD", (raw[:MAX_WORD_CHARS].lower(), prefix)))
            i = j + (1 if prefix else 0)
        else:
            i += 1
    return out


class _Parser:
    """Recursive descent over the tokens; forgiving: stray operators and brackets are ignored."""

    def __init__(self, tokens: list[tuple[str, Any]]):
        self.tokens, self.pos, self.operators, self.terms = tokens, 0, False, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def parse(self) -> Any:
        node = self.or_expr()
        while self.pos < len(self.tokens):  # a stray ")" or operator: skip it, read on
            self.pos += 1
            more = self.or_expr()
            node = more if node is None else node if more is None else ("and", [node, more])
        return node

    def or_expr(self) -> Any:
        parts = [self.and_expr()]
        while self.peek() == "OR":
            self.pos += 1
            self.operators = True
            parts.append(self.and_expr())
        parts = [p for p in parts if p is not None]
        return None if not parts else parts[0] if len(parts) == 1 else ("or", parts)

    def and_expr(self) -> Any:
        parts = []
        while self.peek() not in (None, "OR", "RP"):
            if self.peek() == "AND":
                self.operators |= self.tokens[self.pos][1] == "explicit"  # "and" in lower case: a plain word list
                self.pos += 1
                continue
            part = self.unary()
            if part is not None:
                parts.append(part)
        return None if not parts else parts[0] if len(parts) == 1 else ("and", parts)

    def unary(self) -> Any:
        kind, value = self.tokens[self.pos]
        self.pos += 1
        if kind == "NOT":
            self.operators = True
            if self.peek() in (None, "OR", "RP", "AND"):
                return None  # a NOT with nothing after it
            inner = self.unary()
            if inner is None:
                return None
            return inner[1] if inner[0] == "not" else ("not", inner)
        if kind == "LP":
            self.operators = True
            node = self.or_expr()
            if self.peek() == "RP":
                self.pos += 1
            return node
        if kind == "WORD" and self.terms < MAX_TERMS:
            self.terms += 1
            return ("word", value)
        if kind == "PHRASE" and self.terms < MAX_TERMS:
            self.operators = True
            self.terms += 1
            return ("phrase", value[:MAX_TERMS])
        return None


def _quote(word: str) -> str:
    return f'"{word}"'


def _term_fts(node: Any) -> str:
    if node[0] == "word":
        word, prefix = node[1]
        if prefix:
            return _quote(word) + "*"
        forms = word_forms(word)
        return _quote(word) if len(forms) == 1 else "(" + " OR ".join(map(_quote, forms)) + ")"
    variants = [[]]
    for word in node[1]:
        variants = [v + [f] for v in variants for f in word_forms(word)][:MAX_PHRASE_VARIANTS]
    texts = [_quote(" ".join(v)) for v in variants]
    return texts[0] if len(texts) == 1 else "(" + " OR ".join(texts) + ")"


def _no_positive(text: str) -> QuerySyntaxError:
    return QuerySyntaxError(f"The search '{text}' has NOT without a word to look for beside it: "
                            "NOT only leaves items out (e.g. 'beach NOT dog')")


def _compile(node: Any, text: str, positives: list[str]) -> str:
    kind = node[0]
    if kind in ("word", "phrase"):
        fts = _term_fts(node)
        positives.append(fts)
        return fts
    if kind == "not":
        raise _no_positive(text)
    if kind == "or":
        return "(" + " OR ".join(_compile(child, text, positives) for child in node[1]) + ")"
    keep = [child for child in node[1] if child[0] != "not"]
    leave_out = [child[1] for child in node[1] if child[0] == "not"]
    if not keep:
        raise _no_positive(text)
    fts = "(" + " AND ".join(_compile(child, text, positives) for child in keep) + ")"
    if leave_out:
        ignored: list[str] = []  # words left out are not highlighted
        fts += " NOT (" + " OR ".join(_compile(child, text, ignored) for child in leave_out) + ")"
    return fts


#: A search text starting with this also looks in the beam candidates the user did not pick.
CANDIDATES_PREFIX = re.compile(r"\s*candidates\s*:\s*", re.IGNORECASE)


def parse_search(text: str) -> SearchQuery | None:
    """Parse what a user typed into a :class:`SearchQuery`; None for a blank text.

    A leading ``candidates:`` asks to search the unpicked beam candidates too (``SearchQuery.candidates``).

    Raises :class:`QuerySyntaxError` (a GalleryError) when the text has no searchable word
    (``%``, ``*``, a lone ``AND``, punctuation) or only words to leave out (``NOT dog``).
    """
    text = "" if text is None else str(text)
    wide = CANDIDATES_PREFIX.match(text)
    if wide:
        text = text[wide.end():]
    if not text.strip():
        return None
    shown = " ".join(text.split())[:80]
    parser = _Parser(_tokens(text))
    tree = parser.parse()
    if tree is None:
        raise QuerySyntaxError(f"The search '{shown}' has no searchable word: type a word of a caption, "
                               "a tag or a file name")
    positives: list[str] = []
    fts = _compile(tree, shown, positives)
    plain = not parser.operators
    found = [v[0] for v in _leaves(tree) if v]
    return SearchQuery(text=text, fts=fts, any_fts=" OR ".join(positives),
                       highlight_fts=" OR ".join(positives), plain=plain, words=tuple(found),
                       candidates=bool(wide))


def _leaves(node: Any) -> list[tuple[str, ...]]:
    if node[0] == "word":
        return [(node[1][0],)]
    if node[0] == "phrase":
        return [(" ".join(node[1]),)]
    if node[0] == "not":
        return []
    return [leaf for child in node[1] for leaf in _leaves(child)]
