"""HTML pieces for the studio's Gallery tab: the search help, the list of matches (highlighted caption,
where it matched, a by-meaning score), a photo item's facts and what the item details add (confidence,
tags, caption history), the attention player's data for a saved photo (`item_view`: the same player as
the Caption tab's, `captioner.studio.player`), and the item modal's style.

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

from captioner.studio import player
from captioner.studio.render import esc

CSS = """
#search-help { font-size: 0.85rem; opacity: 0.85; margin-top: -6px; }
#search-help code { font-size: 0.8rem; }
.match-list { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 6px; }
.match-list li { border: 1px solid var(--border-color-primary, #e4e4e7); border-radius: 8px; padding: 6px 10px;
  cursor: pointer; line-height: 1.35; }
.match-list li:hover, .match-list li:focus { background: var(--background-fill-secondary, #f4f4f5); }
/* the words a search found: dark text on yellow in both themes (light text on it was 1.1:1 in the dark one) */
.match-caption mark, .item-extras mark { background: #fde68a; color: #18181b !important; padding: 0 1px; border-radius: 2px; }
.match-meta { font-size: 0.78rem; opacity: 0.75; display: block; margin-top: 2px; }
.match-note { font-size: 0.85rem; margin: 0 0 8px; }
.item-extras { margin-top: 10px; display: flex; flex-direction: column; gap: 8px; }
.item-extras .tag-list { display: flex; flex-wrap: wrap; gap: 6px; margin: 0; padding: 0; list-style: none; }
.item-extras .tag-list li { border-radius: 999px; padding: 1px 10px; font-size: 0.82rem;
  background: var(--background-fill-secondary, #f4f4f5); border: 1px solid var(--border-color-primary, #e4e4e7); }
.item-extras .confidence.low { color: #b45309; font-weight: 600; }
.dark .item-extras .confidence.low { color: #fbbf24; }
.item-extras .history { font-size: 0.88rem; margin: 0; padding-left: 18px; }
.item-extras .history time { opacity: 0.7; font-variant-numeric: tabular-nums; margin-right: 6px; }
.item-extras .in-trash { padding: 6px 10px; border-radius: 8px; background: #fef3c7; color: #92400e; }
#item-panel { scroll-margin-top: 8px; }
/* The item details are a modal: a fixed overlay over the page (full screen on a phone), scrollable inside.
   Closed unless the page's body has .item-modal-open (set by the modal's script, static/gallery_modal.js). */
body:not(.item-modal-open) #item-modal { display: none !important; }
body.item-modal-open { overflow: hidden; }
#item-modal { position: fixed; inset: 0; z-index: 1000; margin: 0; padding: 24px; box-sizing: border-box;
  background: rgba(15, 15, 20, 0.62); display: flex; align-items: center; justify-content: center;
  max-width: none; width: 100vw; height: 100vh; height: 100dvh; }
#item-panel { width: min(1240px, 100%); max-height: 100%; overflow-y: auto; overscroll-behavior: contain;
  box-sizing: border-box; padding: 0 18px 18px; scroll-padding-top: 64px; border-radius: 12px; flex: 0 1 auto; min-width: 0;
  background: var(--background-fill-primary, #fff); box-shadow: 0 12px 40px rgba(0,0,0,0.35); }
#item-panel:focus { outline: none; }
/* the title bar and the item's actions stay at the top of the window while its content scrolls */
#item-modal-head { position: sticky; top: 0; z-index: 5; margin: 0; gap: 4px; padding-bottom: 6px;
  background: var(--background-fill-primary, #fff); border-bottom: 1px solid var(--border-color-primary, #e4e4e7); }
#item-modal-bar { margin: 0; padding: 8px 0 2px; align-items: center; flex-wrap: nowrap; }
/* nothing in the window is squeezed to let the rest fit: the window scrolls instead (a video was 0 px high) */
#item-panel > *, #item-modal-head > * { flex-shrink: 0; }
#item-player video { min-height: 180px; max-height: 45vh; }
#item-actions .row { gap: 6px; }
#item-modal-title { font-weight: 700; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
#item-close { max-width: 130px; }
#item-view .pv-root { gap: 8px; }
@media (max-width: 640px) {
  #item-modal { padding: 0; }
  #item-panel { width: 100%; height: 100%; max-height: none; border-radius: 0; padding: 0 10px 16px; }
  #item-modal-bar { padding: 6px 0 0; }
  #item-actions button { min-width: 0 !important; flex: 1 1 auto; padding-left: 6px; padding-right: 6px; }
  #item-player video { min-height: 160px; max-height: 40vh; }
}
/* the grid wraps to the width of its box (Gradio's columns are fixed: 6 x 100 px overflowed a phone) */
#gallery-grid .grid-container { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)) !important; }
@media (max-width: 640px) {
  #gallery-grid .grid-container { grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)) !important; }
}
#item-details .item-extras ul.tag-list, #item-details .item-extras ul.tag-list li { list-style: none; margin: 0; }
#item-details .item-extras ul.tag-list { padding: 0; }
#caption-edit-row { align-items: flex-end; }
@media (max-width: 720px) {
  #gallery-results { flex-direction: column; flex-wrap: nowrap; }
  #gallery-results > * { min-width: 0 !important; width: 100%; }
}
#gallery-undo { max-width: 120px; }
/* the delete's message and Undo, as a toast at the bottom of the window (static/gallery_toast.js) */
body.gallery-toast-open #gallery-toast { position: fixed; left: 50%; bottom: 24px; transform: translateX(-50%);
  z-index: 1200; width: max-content; max-width: calc(100vw - 24px); margin: 0; padding: 8px 10px 8px 16px;
  flex-wrap: nowrap; align-items: center; gap: 12px; border-radius: 10px; background: #18181b;
  box-shadow: 0 8px 28px rgba(0, 0, 0, 0.35); }
body.gallery-toast-open #gallery-toast #gallery-message, body.gallery-toast-open #gallery-toast #gallery-message * {
  color: #fafafa; background: transparent; }
body.gallery-toast-open #gallery-toast #gallery-undo { background: #fde68a; color: #18181b; border-color: #fde68a;
  font-weight: 700; }
"""

#: Under the search box: what the box understands (Markdown).
SEARCH_HELP = (
    "Searches what you saved: captions, tags, file names (the candidates you did not pick only when "
    "ticked above, or with `candidates:` first). "
    "Plain words find items with **all** of them: `dog grass`. "
    "`dog OR cat` either · `dog NOT lake` leaves lakes out · `\"red ball\"` the exact phrase · "
    "`bicyc*` a prefix · `(dog OR cat) AND grass` groups. "
    "Word forms match (`child` finds *children*). **By meaning** shows the items your description fits "
    "well, in the captioner's own judgement (best first, with how well), or says that none does."
)

#: A confidence under this is flagged as low in the details.
LOW_CONFIDENCE = 0.35
#: What `matched_in` names, as the user reads it.
MATCHED_IN_WORDS = {"caption": "the saved caption", "tags": "the tags", "name": "the file name",
                    "candidates": "a candidate you did not pick", "segments": "a shot", "shots": "a shot"}

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


def strength_text(strength: Any) -> str:
    """A by-meaning match's strength in words: "strong match (86%)", "fair match (62%)"; "matched by its words"
    for an item the model could not score (escaped)."""
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not math.isfinite(strength):
        return "matched by its words (the model could not score it)"
    word = "strong" if strength >= 0.8 else "fair"
    return esc(f"{word} match ({strength:.0%})")


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
        if score and mode == "similar":
            meta.append("similarity " + score)
        if mode == "meaning":
            meta.append(strength_text(entry.get("strength")))
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


def item_extras(item: dict, history: list[dict] | None = None, entry: dict | None = None,
                in_player: bool = False) -> str:
    """What the item details add: the caption to copy (``data-caption``), confidence, tags, where a search
    matched, the caption's history (oldest edits last) and, for an item in the trash, a note.
    ``in_player``: the attention player shows the confidence and tags (a photo item): not again here."""
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
    confidence = None if in_player else item.get("confidence")
    if isinstance(confidence, (int, float)) and math.isfinite(confidence):
        low = confidence < LOW_CONFIDENCE
        parts.append(f'<div class="confidence{" low" if low else ""}">Confidence {confidence:.0%}'
                     f'{" (low: check the caption)" if low else ""}</div>')
    tags = [] if in_player else _tags(item)
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
    """The details HTML (`render.video_details` or `photo_details`) with the extras at the end of its side column, or after it."""
    marker = '<div class="item-side">'
    start = details.find(marker)
    if start >= 0:
        end = details.find('<div class="item-cands">', start)
        if end > 0 and details[:end].endswith("</div>"):
            cut = end - len("</div>")
            return details[:cut] + extras + details[cut:]
    return details + extras


def item_title(item: dict) -> str:
    """The modal's title: "Item #12 · photo.jpg" (escaped), "(video)" for a video, "(in the trash)" for one there."""
    name = str(item.get("original_name") or "")
    kind = " (video)" if item.get("kind") == "video" else ""
    trash = " (in the trash)" if item.get("deleted_at") else ""
    return esc(f"Item #{item.get('id')}{kind}{' · ' + name if name else ''}{trash}")


def photo_details(item: dict) -> str:
    """A photo item's facts beside its saved caption (the photo and its candidates are in the attention
    player, `item_view`: nothing is drawn here)."""
    saved = (item.get("saved_at") or "—").replace("T", " ").split(".")[0].replace("+00:00", " UTC")
    facts = [("Item", f"#{item.get('id')}"), ("File", item.get("original_name") or "—"),
             ("Size", f"{item.get('width')}×{item.get('height')} px" if item.get("width") else "—"),
             ("Saved", saved), ("Model", item.get("model_name") or "—"), ("Beam size", item.get("beam_size") or "—")]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return (f'<div class="item-details"><div class="item-side">'
            f'<div class="chosen">“{esc(item.get("caption"))}”</div><dl>{dl}</dl></div></div>')


def chosen_candidate(item: dict) -> int:
    """The candidate whose caption the item saved (spacing and case aside), else 0 (the best)."""
    saved = " ".join(str(item.get("caption") or "").lower().split())
    for i, cand in enumerate(item.get("candidates") or []):
        if isinstance(cand, dict) and " ".join(str(cand.get("caption") or "").lower().split()) == saved:
            return i
    return 0


def item_view(item: dict, image: Any, nonce: str, low: float | None = None, error: str | None = None,
              high: float | None = None) -> dict:
    """What the attention player (`captioner.studio.player`, kind "item") draws for a saved photo: the photo
    (a small JPEG of ``image``, the gallery's file decoded by the caller), its saved candidates with their
    attention maps as levels, tags and confidence; the candidate that was saved starts selected.

    ``error``: why the photo cannot be shown (then ``image`` is None and only the message is drawn).
    ``low`` / ``high``: the confidence badges' bands (see `photos_tab.PhotosTab.high_confidence`).  A saved
    caption that is none of the candidates (the user's edit) is ``saved.edited``: it gets no model badge.
    Nothing here names a file: the player sends back only a candidate index (for a GIF on request).
    """
    confidence = item.get("confidence")
    confidence = round(float(confidence), 3) if isinstance(confidence, (int, float)) and math.isfinite(confidence) \
        else None
    candidates = [c for c in item.get("candidates") or [] if isinstance(c, dict)]
    entry = {"key": f"item{item.get('id')}", "index": 0, "name": str(item.get("original_name") or
                                                                   f"Item #{item.get('id')}"),
             "width": item.get("width"), "height": item.get("height"), "error": error,
             "beam": item.get("beam_size"), "tags": player.tags_data(item.get("tags")), "warnings": [],
             "confidence": confidence, "saved": None, "photo": None, "candidates": [],
             "chosen": chosen_candidate(item)}
    caption = " ".join(str(item.get("caption") or "").lower().split())
    edited = bool(caption) and bool(candidates) and not any(
        " ".join(str(c.get("caption") or "").lower().split()) == caption
                                       for c in candidates)
    entry["saved"] = {"id": item.get("id"), "caption": str(item.get("caption") or ""), "edited": edited}
    if edited:
        entry["confidence"] = None
    if image is not None and error is None:
        entry["photo"] = player.photo_data(image, item.get("width") or image.width,
                                           item.get("height") or image.height)
        entry["candidates"] = [player.candidate_data(c) for c in candidates]
        if not entry["candidates"]:  # saved without candidates: the caption alone, no attention
            entry["candidates"] = [player.candidate_data({"caption": str(item.get("caption") or "")})]
            entry["chosen"] = 0
    return {"kind": "item", "nonce": nonce, "photos": [entry], "selected": 0, "low": low, "high": high,
            "read_only": True,
            "no_copy": True}


def no_item_view(message: str = "") -> dict:
    """The player with nothing to draw (a video item: the gallery keeps no attention maps for its shots)."""
    return {"kind": "item", "photos": [], "message": message, "nonce": None}
