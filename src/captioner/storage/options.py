"""How to sort and filter gallery items: one dataclass for :meth:`Gallery.browse` /
:meth:`Gallery.search` and the ``captioner gallery list|search`` flags (generated from it).

Kept apart from :mod:`.gallery` so the CLI parser can read it without loading SQLite code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ListOptions:
    sort: str = field(default="", metadata={
        "help": "order: relevance (searches only), saved_at, caption or confidence; "
                "none: relevance for a search, saved_at for a list",
        "choices": ["relevance", "saved_at", "caption", "confidence"]})
    ascending: bool = field(default=False, metadata={"help": "oldest / A to Z / least confident first"})
    model: str = field(default="", metadata={"help": "only items captioned by this model (see `gallery models`)"})
    kind: str = field(default="", metadata={"help": "only photos or only videos", "choices": ["photo", "video"]})
    saved_from: str = field(default="", metadata={
        "help": "only items saved on or after this day or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)"})
    saved_to: str = field(default="", metadata={
        "help": "only items saved up to this day (all of it) or time (UTC)"})
    min_confidence: str = field(default="", metadata={"help": "only items whose caption's confidence is at "
                                                               "least this (0 to 1)"})
    max_confidence: str = field(default="", metadata={"help": "only items whose caption's confidence is at "
                                                               "most this (0 to 1)"})

    def keywords(self, search: bool = False) -> dict[str, Any]:
        """The keyword arguments of ``Gallery.search`` (``search``) or ``Gallery.browse``."""
        sort = self.sort or ("relevance" if search else "saved_at")
        if sort == "relevance" and not search:
            sort = "saved_at"
        return {"sort": sort, "descending": not self.ascending, "model": self.model or None,
                "kind": self.kind or None, "saved_from": self.saved_from or None,
                "saved_to": self.saved_to or None, "min_confidence": self.min_confidence or None,
                "max_confidence": self.max_confidence or None}
