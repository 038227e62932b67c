"""How to sort and filter gallery items: one dataclass for :meth:`Gallery.browse` /
:meth:`Gallery.search` and the ``captioner gallery list|search`` flags (generated from it).

Kept apart from :mod:`.gallery` so the CLI parser can read it without loading SQLite code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from captioner.settings import Settings, setting


@dataclass(frozen=True)
class ListOptions(Settings):
    sort: str = setting(
        "", "order: relevance (searches only), saved_at, caption or confidence; none: relevance for a search, "
        "saved_at for a list", choices=("relevance", "saved_at", "caption", "confidence"),
        special={"": "the order of the command"})
    ascending: bool = setting(False, "oldest / A to Z / least confident first")
    model: str = setting("", "only items captioned by this model (see `gallery models`)")
    kind: str = setting("", "only photos or only videos", choices=("photo", "video"), special={"": "both"})
    saved_from: str = setting("", "only items saved on or after this day or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)")
    saved_to: str = setting("", "only items saved up to this day (all of it) or time (UTC)")
    min_confidence: float | None = setting(None, "only items whose caption's confidence is at least this",
                                           lo=0.0, hi=1.0)
    max_confidence: float | None = setting(None, "only items whose caption's confidence is at most this",
                                           lo=0.0, hi=1.0)

    def keywords(self, search: bool = False) -> dict[str, Any]:
        """The keyword arguments of ``Gallery.search`` (``search``) or ``Gallery.browse``."""
        sort = self.sort or ("relevance" if search else "saved_at")
        if sort == "relevance" and not search:
            sort = "saved_at"
        return {"sort": sort, "descending": not self.ascending, "model": self.model or None,
                "kind": self.kind or None, "saved_from": self.saved_from or None,
                "saved_to": self.saved_to or None, "min_confidence": self.min_confidence,
                "max_confidence": self.max_confidence}
