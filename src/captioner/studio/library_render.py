"""HTML pieces for the studio's Gallery tab: the search help, the list of matches (highlighted caption,
where it matched, a by-meaning score), and what the item details add (confidence, tags, caption history).

Pure functions of their inputs (no Gradio import).  Text from the gallery is escaped here; the one
piece of HTML the gallery gives, a search's ``highlight`` (the caption with ``<mark>`` around the
matching words), is checked and rebuilt (`safe_highlight`): only ``<mark>`` survives, and only when
the text around the marks is the item's caption.
"""
from __future__ import annotations

import html
import math
import re
from typing import Any

from captioner.studio.render import esc

CSS = """
#search-help { font-size: 0.85rem; opacity: 0.85; margin-top: -6px; }
#search-help code { font-size: 0.8rem; }
.match-list { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 6px; }
.match-list li { border: 1px solid var(--border-color-primary, #e4e4e7); border-radius: 8px; padding: 6px 10px;
  cursor: pointer; line-height: 1.35; }
.match-list li:hover, .match-list li:focus { background: var(--background-fill-secondary, #f4f4f5); }
.match-caption mark, .item-extras mark { background: #fde68a; color: inherit; padding: 0 1px; border-radius: 2px; }
.match-meta { font-size: 0.78rem; opacity: 0.75; display: block; margin-top: 2px; }
.match-note { font-size: 0.85rem; margin: 0 0 8px; }
.item-extras { margin-top: 10px; display: flex; flex-direction: column; gap: 8px; }
.item-extras .tag-list { display: flex; flex-wrap: wrap; gap: 6px; margin: 0; padding: 0; list-style: none; }
.item-extras .tag-list li { border-radius: 999px; padding: 1px 10px; font-size: 0.82rem;
  background: var(--background-fill-secondary, #f4f4f5); border: 1px solid var(--border-color-primary, #e4e4e7); }
.item-extras .confidence.low { color: #b45309; font-weight: 600; }
.item-extras .history { font-size: 0.88rem; margin: 0; padding-left: 18px; }
.item-extras .history time { opacity: 0.7; font-variant-numeric: tabular-nums; margin-right: 6px; }
.item-extras .in-trash { padding: 6px 10px; border-radius: 8px; background: #fef3c7; color: #92400e; }
#item-panel { scroll-margin-top: 8px; }
#item-details .item-extras ul.tag-list, #item-details .item-extras ul.tag-list li { list-style: none; margin: 0; }
#item-details .item-extras ul.tag-list { padding: 0; }
#caption-edit-row { align-items: flex-end; }
@media (max-width: 720px) {
  #gallery-results { flex-direction: column; flex-wrap: nowrap; }
  #gallery-results > * { min-width: 0 !important; width: 100%; }
}
#gallery-undo { max-width: 120px; }
"""

#: Under the search box: what the box understands (Markdown).
SEARCH_HELP = (
    "Plain words find items with **all** of them: `dog grass`. "
    "`dog OR cat` either · `dog NOT lake` leaves lakes out · `\"red ball\"` the exact phrase · "
    "`bicyc*` a prefix · `(dog OR cat) AND grass` groups. "
    "Word forms match (`child` finds *children*). **By meaning** ranks every item by how well your "
    "description fits it, in the captioner's own judgement."
)

#: A confidence under this is flagged as low in the details.
LOW_CONFIDENCE = 0.35
#: What `matched_in` names, as the user reads it.
MATCHED_IN_WORDS = {"caption": "the saved caption", "tags": "the tags", "name": "the file name",
                    "candidates": "another candidate", "segments": "a shot", "shots": "a shot"}

_MARK = re.compile(r"(</?mark>)")


def safe_highlight(highlight: Any, caption: Any) -> str:
    """``highlight`` (HTML: the caption with ``<mark>``) made safe, or the escaped caption.

    The text between the marks is unescaped and escaped again (so any tag other than ``<mark>`` is
    shown as text, never run); the marks must pair up and the text, marks removed, must be the
    caption itself.  Anything else falls back to the caption without marks.
    """
    plain = "" if caption is None else str(caption)
    if not isinstance(highlight, str) or "<mark>" not in highlight:
        return esc(plain)
    out, text, inside = [], [], False
    for piece in _MARK.split(highlight):
        if piece == "<mark>":
            if inside:
                return esc(plain)
            inside = True
            out.append(piece)
        elif piece == "</mark>":
            if not inside:
                return esc(plain)
            inside = False
            out.append(piece)
        elif piece:
            raw = html.unescape(piece)
            text.append(raw)
            out.append(html.escape(raw, quote=True))
    if inside or "".join(text) != plain:
        return esc(plain)
    return "".join(out)


def matched_in_text(matched_in: Any) -> str:
    """'matched in the saved caption and the tags' (escaped), or ''."""
    if isinstance(matched_in, str):
        matched_in = [matched_in]
    if not isinstance(matched_in, (list, tuple)):
        return ""
    names = [MATCHED_IN_WORDS.get(str(m), str(m)) for m in matched_in if m]
    names = list(dict.fromkeys(names))
    if not names:
        return ""
    words = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return esc(f"matched in {words}")


def score_text(score: Any) -> str:
    try:
        value = float(score)
    except (TypeError, ValueError):
        return ""
    return f"{value:.3f}" if math.isfinite(value) else ""


def match_list(entries: list[dict], page: dict) -> str:
    """The search's matches beside the grid, in the grid's order.

    ``entries`` are the grid's items (``data-index`` is the item's place in the grid: a click opens
    it there); each shows its caption (highlighted when the gallery marked it), where it matched, and
    for a by-meaning search or "more like this" its score.  Unknown words of a by-meaning search are named.
    """
    mode = page.get("mode", "words")
    notes = []
    unknown = [str(w) for w in page.get("unknown_words") or [] if w]
    if unknown:
        notes.append("The captioner does not know " + ", ".join(f"“{esc(w)}”" for w in unknown)
                     + ": left to the word search.")
    rows = []
    for i, entry in enumerate(entries):
        caption = safe_highlight(entry.get("highlight"), entry.get("caption"))
        meta = []
        where = matched_in_text(entry.get("matched_in"))
        if where:
            labels = [str(t) for t in entry.get("tag_labels") or [] if t]
            meta.append(where + (f" ({esc(', '.join(labels))})" if labels else ""))
        score = score_text(entry.get("score"))
        if score and mode in ("meaning", "similar"):
            meta.append(("similarity " if mode == "similar" else "score ") + score)
        meta_html = f'<span class="match-meta">{" · ".join(meta)}</span>' if meta else ""
        rows.append(f'<li data-index="{i}" tabindex="0" title="Open this item">'
                    f'<span class="match-caption">{caption}</span>{meta_html}</li>')
    note = "".join(f'<p class="match-note">{n}</p>' for n in notes)
    return f'<div class="match-panel">{note}<ol class="match-list">{"".join(rows)}</ol></div>'


def _tags(item: dict) -> list[tuple[str, float | None]]:
    tags = item.get("tags")
    out = []
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and tag.get("label"):
            score = tag.get("score")
            out.append((str(tag["label"]), float(score) if isinstance(score, (int, float)) else None))
        elif isinstance(tag, str) and tag:
            out.append((tag, None))
    return out


def _when(stamp: Any) -> str:
    return str(stamp or "").replace("T", " ").split(".")[0].replace("+00:00", " UTC")


def item_extras(item: dict, history: list[dict] | None = None, entry: dict | None = None) -> str:
    """What the item details add: the caption to copy (``data-caption``), confidence, tags, where a search
    matched, the caption's history (oldest edits last) and, for an item in the trash, a note."""
    caption = str(item.get("caption") or "")
    parts = [f'<div class="item-extras" data-item="{esc(item.get("id"))}" data-caption="{esc(caption)}">']
    if item.get("deleted_at"):
        parts.append(f'<div class="in-trash">In the trash since {esc(_when(item["deleted_at"]))}: '
                     "restore it to edit, download or share it.</div>")
    if entry and entry.get("highlight"):
        where = matched_in_text(entry.get("matched_in"))
        parts.append(f'<div class="item-match">Search: <span class="match-caption">'
                     f'{safe_highlight(entry.get("highlight"), caption)}</span>'
                     f'{f" <small>({where})</small>" if where else ""}</div>')
    confidence = item.get("confidence")
    if isinstance(confidence, (int, float)) and math.isfinite(confidence):
        low = confidence < LOW_CONFIDENCE
        parts.append(f'<div class="confidence{" low" if low else ""}">Confidence {confidence:.0%}'
                     f'{" (low: check the caption)" if low else ""}</div>')
    tags = _tags(item)
    if tags:
        chips = "".join(f'<li title="{esc(f"{s:.0%}" if s is not None else "")}">{esc(label)}</li>'
                        for label, s in tags)
        parts.append(f'<div class="tags"><span>Tags</span><ul class="tag-list">{chips}</ul></div>')
    if history:
        rows = "".join(f'<li><time>{esc(_when(h.get("replaced_at")))}</time>“{esc(h.get("caption"))}”</li>'
                       for h in history if isinstance(h, dict))
        parts.append(f'<details class="caption-history" open><summary>Earlier captions ({len(history)})</summary>'
                     f'<ol class="history">{rows}</ol></details>')
    parts.append("</div>")
    return "".join(parts)


def with_extras(details: str, extras: str) -> str:
    """The details HTML (`render.item_details`) with the extras at the end of its side column, or after it."""
    marker = '<div class="item-side">'
    start = details.find(marker)
    if start >= 0:
        end = details.find('<div class="item-cands">', start)
        if end > 0 and details[:end].endswith("</div>"):
            cut = end - len("</div>")
            return details[:cut] + extras + details[cut:]
    return details + extras
