"""The Gallery tab's searches and its grid: the session's view (sort, filters, trash), a search by words
(highlighted), by meaning (`captioner.retrieval.search.find`) or "more like this"
(`captioner.retrieval.more_like_this.similar`), and the grid of thumbnails with its page line and list
of matches.  What the session keeps of a result (`grid_page_of`) holds ids and the server's own paths;
nothing the browser sends back names a file.
"""
from __future__ import annotations

import html
import logging
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from captioner.storage import GalleryError
from captioner.studio import files, library_render, render
from captioner.studio.values import SHA256_HEX, int_value

if TYPE_CHECKING:
    from captioner.retrieval.search import Match

log = logging.getLogger("captioner.studio")

#: Items per page of the grid (and the most a by-meaning search or "more like this" shows).
PER_PAGE = 24
#: Side of the grid's thumbnails (px).
THUMB_SIZE = 320
#: The sort menu: label -> (Gallery sort, descending).  "Best match" ranks a word search by relevance
#: (a browse then goes newest first).
SORTS = {"Best match / newest": ("relevance", True), "Newest first": ("saved_at", True),
         "Oldest first": ("saved_at", False), "Caption A–Z": ("caption", False), "Caption Z–A": ("caption", True),
         "Most confident": ("confidence", True), "Least confident": ("confidence", False)}
DEFAULT_SORT = "Best match / newest"
KINDS = {"Photos and videos": None, "Photos": "photo", "Videos": "video"}
ALL_MODELS = "All models"
VIEWS = ("Saved items", "Trash")


def default_view() -> dict:
    """What the session's grid shows: the search mode, the sort and filters, the trash or not."""
    return {"meaning": False, "sort": DEFAULT_SORT, "model": None, "kind": None, "saved_from": None,
            "saved_to": None, "trash": False, "candidates": False}


def _day(text: Any, what: str) -> str | None:
    """A date typed by the user (YYYY-MM-DD), or None when blank; GalleryError when it is not a date."""
    value = "" if text is None else str(text).strip()
    if not value:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise GalleryError(f"“{value[:30]}” is not a date: write the {what} date as YYYY-MM-DD, e.g. "
                       f"{date.today().isoformat()}")


class GallerySearch:
    """The Gallery tab's searches and grid (a part of `GalleryTab`: it gives ``studio``, the `Studio`, and
    ``_meaning_lock``, which lets one by-meaning search run at a time)."""

    # ------------------------------------------------------------------ the view (sort, filters, trash)
    def clean_view(self, view: Any) -> dict:
        """The session's view, every field checked (junk becomes the default)."""
        out = default_view()
        if not isinstance(view, dict):
            return out
        out["meaning"] = view.get("meaning") is True
        out["sort"] = view.get("sort") if view.get("sort") in SORTS else DEFAULT_SORT
        out["kind"] = view.get("kind") if view.get("kind") in ("photo", "video") else None
        model = view.get("model")
        out["model"] = model if isinstance(model, str) and model else None
        for key in ("saved_from", "saved_to"):
            value = view.get(key)
            out[key] = value if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
        out["trash"] = view.get("trash") is True
        out["candidates"] = view.get("candidates") is True
        return out

    def set_view(self, meaning, sort, model, kind, saved_from, saved_to, which, candidates=False):
        """The sort/filter/trash controls changed: the session's new view (checked), and page 1.
        ``candidates``: a word search looks in the beam candidates the user did not pick too."""
        view = default_view()
        view["meaning"] = meaning is True
        view["candidates"] = candidates is True
        view["sort"] = sort if sort in SORTS else DEFAULT_SORT
        view["kind"] = KINDS.get(kind) if isinstance(kind, str) else None
        known = self.studio.gallery.models()
        view["model"] = model if isinstance(model, str) and model in known else None
        view["trash"] = which == VIEWS[1]
        try:
            view["saved_from"] = _day(saved_from, "first")
            view["saved_to"] = _day(saved_to, "last")
        except GalleryError as exc:
            gr.Warning(str(exc))
        return view, 1

    def model_choices(self):
        """The model menu: every model of the live items (asked of the gallery when the tab opens)."""
        return gr.Dropdown(choices=[ALL_MODELS, *self.studio.gallery.models()])

    def _filters(self, view: dict) -> dict:
        return {"model": view["model"], "kind": view["kind"], "saved_from": view["saved_from"],
                "saved_to": view["saved_to"]}

    # ------------------------------------------------------------------ search
    def search(self, query, page, view=None, progress=gr.Progress()):
        """API ``/search``: one page of gallery items matching ``query`` (all items if empty).

        Returns (JSON for the caller, the page for this session's grid).  The grid is drawn
        from the second, which stays on the server: nothing the browser sends back names a file.
        ``view`` is the session's sort/filter/trash/by-meaning choice (see `set_view`; API callers
        have the default: words, best match first, no filter).
        """
        text = "" if query is None else str(query)
        page_no = int_value(page, 1, 10**9, 1)
        view = self.clean_view(view)
        try:
            if view["trash"]:
                found = self._found(text, self._paged(lambda p: self.studio.gallery.trash(p, PER_PAGE), page_no),
                                    mode="trash")
            elif view["meaning"] and text.strip():
                found = self._find_by_meaning(text, progress)
            else:
                sort, descending = SORTS[view["sort"]]
                filters = self._filters(view)
                if text.strip():
                    result = self._paged(lambda p: self.studio.gallery.search(
                        text, p, PER_PAGE, sort=sort, descending=descending, candidates=view["candidates"],
                        **filters), page_no)
                else:
                    result = self._paged(lambda p: self.studio.gallery.browse(
                        p, PER_PAGE, sort="saved_at" if sort == "relevance" else sort, descending=descending,
                        **filters), page_no)
                found = self._found(text, result, mode="words")
        except GalleryError as exc:
            gr.Warning(str(exc))
            found = {"query": text, "total": 0, "page": 1, "pages": 1, "per_page": PER_PAGE, "match_all": True,
                     "items": [], "error": str(exc), "mode": "meaning" if view["meaning"] else "words"}
        return found, grid_page_of(found)

    @staticmethod
    def _paged(fetch, page_no: int):
        result = fetch(page_no)
        if result.page > result.pages and result.total:  # e.g. after deleting the last item of a page
            result = fetch(result.pages)
        return result

    @staticmethod
    def _found(text: str, result, mode: str) -> dict:
        return {"query": text, "total": result.total, "page": result.page, "pages": result.pages,
                "per_page": result.per_page, "match_all": result.match_all, "items": result.items, "mode": mode}

    def _find_by_meaning(self, text: str, progress=None) -> dict:
        """A by-meaning search: `captioner.retrieval.search.find` ranks the items by how well ``text`` fits
        them (items saved without features get them first: ``progress`` follows that).  The retrieval
        modules are imported when first used; with the torch-free captioner they score with numpy (no torch)."""
        from captioner.retrieval.search import find

        def follow(stage, done, total):
            if progress is not None and total:
                progress((min(int(done), int(total)), int(total)), desc=str(stage), unit="photos")

        with self._meaning_lock:
            matches = find(self.studio.gallery, self.studio.captioner, text, top=PER_PAGE, progress=follow)
        items, closest = self._fitting(matches, self._matched_items(matches))
        found = {"query": text, "total": len(items), "page": 1, "pages": 1, "per_page": PER_PAGE,
                 "match_all": True, "items": items, "mode": "meaning",
                 "unknown_words": list(dict.fromkeys(str(w) for w in matches.unknown_words))}
        if closest is not None:
            found["closest"] = closest
        return found

    @staticmethod
    def _fitting(matches: list[Match], items: list[dict]) -> tuple[list[dict], float | None]:
        """The by-meaning items that fit well: each scored one gets its match ``strength`` (0-1, see
        `captioner.retrieval.search.match_strength`) and is kept from the cutoff on; one the model could not
        score but whose words match (full text) is kept as a word match.  Also the best strength left out
        when nothing is kept (None otherwise): the page says that nothing fits well."""
        from captioner.retrieval.config import FindConfig
        from captioner.retrieval.search import match_strength

        config = FindConfig()
        by_id = {m.item_id: m for m in matches}
        kept, best_out = [], None
        for item in items:
            m = by_id.get(item["id"])
            strength = match_strength(m.likelihood, config) if m is not None else None
            item.pop("score", None)  # raw log-probabilities mean nothing to a reader
            if strength is None:
                if m is not None and m.fulltext_rank is not None:
                    item["strength"] = None
                    kept.append(item)
                continue
            if strength >= config.strength_cutoff:
                item["strength"] = round(strength, 3)
                kept.append(item)
            else:
                best_out = strength if best_out is None else max(best_out, strength)
        return kept, (round(best_out, 3) if not kept and best_out is not None else None)

    def _matched_items(self, matches: list[Match]) -> list[dict]:
        """The gallery's items for ranked matches, in order, each with its score."""
        items = []
        for m in matches[:PER_PAGE]:
            item = self.studio.gallery.get(m.item_id)
            if item is None:
                continue
            item["score"] = m.score
            items.append(item)
        return items

    def similar(self, item_id):
        """"More like this": the items most like the one on display (``item_id`` is the session's)."""
        from captioner.retrieval.more_like_this import similar  # imported when first used

        if item_id is None:
            raise gr.Error("Open an item first.", print_exception=False)
        with self._meaning_lock:  # items saved without features get them first (the model runs)
            matches = similar(self.studio.gallery, item_id, top=PER_PAGE + 1, captioner=self.studio.captioner)
        items = [it for it in self._matched_items(matches) if it["id"] != item_id]
        found = {"query": "", "total": len(items), "page": 1, "pages": 1, "per_page": PER_PAGE, "match_all": True,
                 "items": items, "mode": "similar", "similar_to": item_id}
        return grid_page_of(found)

    # ------------------------------------------------------------------ grid
    def _image_file(self, item: dict) -> Path | None:
        """The item's image file, if it is one of this gallery's files (checked, never trusted)."""
        try:
            path = Path(item["image_path"]).resolve()
            images = Path(self.studio.gallery.images_dir).resolve()
        except (KeyError, TypeError, ValueError, OSError):
            return None
        return path if path.is_relative_to(images) and path != images else None

    def _thumb(self, item: dict) -> str | None:
        """A small JPEG of the item's image, cached by content hash (the originals can be huge).

        The item comes from the server's own search (`search`); its hash must still be 64 hex
        digits and its file inside the gallery, so no client value can name a file here.
        """
        digest = str(item.get("image_hash") or "")
        source = self._image_file(item)
        if not SHA256_HEX.fullmatch(digest) or source is None:
            log.warning("studio: no thumbnail for item %s: not a gallery image", item.get("id"))
            return None
        try:
            return files.thumbnail(source, self.studio.thumbs / f"{digest}.jpg", THUMB_SIZE)
        except Exception as exc:  # noqa: BLE001 - a missing image file: leave the item out of the grid
            log.warning("studio: no thumbnail for item %s: %s", item.get("id"), exc)
            return None

    def show_grid(self, page: dict | None):
        """After a search: the grid, the page line, the page number, the ids shown, the paging buttons and
        the list of matches (highlighted captions, where they matched, scores; hidden when browsing).

        ``page`` is the session's copy of the search result (a ``gr.State``), not the JSON the
        browser holds.
        """
        page = page if isinstance(page, dict) else grid_page_of(None)
        shown, ids, entries = [], [], []
        for item in page.get("items", []):
            thumb = self._thumb(item)
            if thumb:
                shown.append((thumb, render.grid_label(item, str(page.get("query") or "")
                                                         if page.get("mode") == "words" else "")))
                ids.append(item["id"])
                entries.append(item)
        line = page_line(page)
        mode = page.get("mode", "words")
        listed = bool(entries) and (mode in ("meaning", "similar")
                                    or (mode == "words" and bool(str(page.get("query", "")).strip())))
        matches = gr.HTML(library_render.match_list(entries, page) if listed else "", visible=listed)
        return (gr.Gallery(value=shown, selected_index=None), line, page.get("page", 1), ids,
                gr.Button(interactive=page.get("page", 1) > 1),
                gr.Button(interactive=page.get("page", 1) < page.get("pages", 1)), matches)

def trash_controls(view):
    """The "Empty trash" button shows in the Trash view only."""
    return gr.Button(visible=isinstance(view, dict) and view.get("trash") is True)


def page_line(page: dict) -> str:
    total, query, mode = page.get("total", 0), str(page.get("query", "")), page.get("mode", "words")
    if page.get("error"):
        return f"⚠️ {html.escape(str(page['error']))}"
    shown = html.escape(query)
    if mode == "trash":
        if not total:
            return "The trash is empty."
        return f"**{total}** item{'s' if total != 1 else ''} in the trash · page {page['page']} of {page['pages']}"
    if mode == "similar":
        return (f"**{total}** item{'s' if total != 1 else ''} most like item #{page.get('similar_to')}, "
                "most similar first" if total else "No other item to compare with.")
    if mode == "meaning":
        if total:
            return f"**{total}** item{'s' if total != 1 else ''} fit “{shown}” well, best first"
        if page.get("closest") is not None:
            return (f"Nothing in the gallery fits “{shown}” well: the closest is a {page['closest']:.0%} match "
                    f"(items under {cutoff_text()} are not shown). Try other words, or a word search.")
        return f"No item to rank for “{shown}”."
    if total == 0:
        return (f"No saved caption matches “{shown}”." if query.strip()
                else "Nothing to show: caption a photo and save it, or change the filters.")
    what = f"matching “{shown}”" if query.strip() else "saved"
    line = f"**{total}** item{'s' if total != 1 else ''} {what} · page {page['page']} of {page['pages']}"
    if not page.get("match_all", True):
        line += " · no item has every word; showing items with any of them"
    return line


def cutoff_text() -> str:
    """The by-meaning cutoff as the page says it ("50%")."""
    from captioner.retrieval.config import FindConfig

    return f"{FindConfig().strength_cutoff:.0%}"


def grid_item(it: dict) -> dict:
    kept = {"id": it["id"], "caption": it["caption"], "image_hash": it["image_hash"], "image_path": it["image_path"]}
    for key in ("highlight", "matched_in", "score", "strength"):  # a search's, for the list of matches
        if it.get(key) is not None:
            kept[key] = it[key]
    if it.get("matched_in") == "tags":  # which tags it has: the caption may not say why it matched
        kept["tag_labels"] = [str(t["label"]) for t in it.get("tags") or []
                              if isinstance(t, dict) and t.get("label")][:6]
    if it.get("matched_in") == "name":  # nor when its file name matched
        kept["name"] = str(it.get("original_name") or "")[:80]
    if it.get("kind") == "video":  # and the matched shots, no more
        kept["kind"] = "video"
        kept["matched_segments"] = [{"idx": m.get("idx"), "start": m.get("start"), "end": m.get("end"),
                                     "caption": m.get("caption")}
                                    for m in it.get("matched_segments") or [] if isinstance(m, dict)]
    return kept


def grid_page_of(found: dict | None) -> dict:
    """What the session keeps of a search result to draw the grid: ids, captions, the server's file paths,
    a search's highlight, where it matched and score, and, for videos, the matched shots (best first)."""
    found = found or {}
    page = {"query": found.get("query", ""), "total": found.get("total", 0), "page": found.get("page", 1),
            "pages": found.get("pages", 1), "match_all": found.get("match_all", True),
            "mode": found.get("mode", "words"), "items": [grid_item(it) for it in found.get("items", [])]}
    for key in ("error", "unknown_words", "similar_to", "closest"):
        if found.get(key) is not None and found.get(key) != []:
            page[key] = found[key]
    return page


def page_entry(page: Any, item_id: Any) -> dict | None:
    """The session's grid entry of item ``item_id`` (its highlight and where it matched), or None."""
    items = page.get("items") if isinstance(page, dict) else None
    for it in items if isinstance(items, list) else []:
        if isinstance(it, dict) and it.get("id") == item_id:
            return it
    return None


def best_match(page: Any, item_id: Any) -> int | None:
    """The index of the best matched shot of item ``item_id`` in the session's grid page, or None."""
    it = page_entry(page, item_id)
    if it is not None:
        matched = it.get("matched_segments") or []
        best = matched[0].get("idx") if matched and isinstance(matched[0], dict) else None
        return best if isinstance(best, int) and not isinstance(best, bool) else None
    return None
