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

import unicodedata

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
