"""The studio's Gallery tab: browse, sort, filter and search the saved captions (by words, with the
matching words highlighted, or by meaning), open an item in a modal (a photo with its saved candidates'
attention in the Caption tab's attention player, or a video that plays from its matched shot), edit its caption (history kept), copy it, download the photo with its caption in its
metadata, show items like it, delete it (with Undo; a Trash view restores or empties), export the
gallery, and import a folder of photos.

Every item shown is one the server looked up; the session keeps the page, the ids shown, the item on
display and the last deleted item (``gr.State``); the browser's event values are indexes into those
lists, choices from fixed menus, or text that is checked — never ids of its own, paths or file names.
"""
from __future__ import annotations

import html
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from captioner.inputs.images import open_image
from captioner.storage import DuplicateItemError, GalleryError
from captioner.studio import library_render, player, render
from captioner.studio.values import (
    MAX_CAPTION_CHARS,
    SESSION_TTL_S,
    SHA256_HEX,
    file_paths,
    index_in,
    int_value,
    is_inside,
    user_errors,
)
from captioner.studio.video_tab import GALLERY_SEEK_JS, ITEM_SHOTS_JS

log = logging.getLogger("captioner.studio")

#: Items per page of the grid (and the most a by-meaning search or "more like this" shows).
PER_PAGE = 24
#: Side of the grid's thumbnails (px).
THUMB_SIZE = 320
EXPORT_FORMATS = ("json", "csv")
#: The sort menu: label -> (Gallery sort, descending).  "Best match" ranks a word search by relevance
#: (a browse then goes newest first).
SORTS = {"Best match / newest": ("relevance", True), "Newest first": ("saved_at", True),
         "Oldest first": ("saved_at", False), "Caption A–Z": ("caption", False), "Caption Z–A": ("caption", True),
         "Most confident": ("confidence", True), "Least confident": ("confidence", False)}
DEFAULT_SORT = "Best match / newest"
KINDS = {"Photos and videos": None, "Photos": "photo", "Videos": "video"}
ALL_MODELS = "All models"
VIEWS = ("Saved items", "Trash")
#: Most files one folder import takes.
MAX_IMPORT_FILES = 2000
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"}

#: The item modal (``js_on_load`` of the item details; installed once per page): the details are a fixed
#: overlay (`library_render.CSS`), shown while the page's body has ``.item-modal-open``.  ``open`` moves the
#: focus into it (its Close button) and remembers what had it; ``close`` (the Close button, Escape, a click
#: on the dimmed page around it) pauses the item's video and attention player and gives the focus back.
#: Tab and Shift+Tab stay inside while it is open.
ITEM_MODAL_JS = """
if (!window.captionerModal) {
  const modal = () => document.getElementById('item-modal');
  const panel = () => document.getElementById('item-panel');
  const isOpen = () => document.body.classList.contains('item-modal-open');
  const focusables = () => Array.from((panel() || document.body).querySelectorAll(
      'button, [href], input, textarea, select, video[controls], [tabindex]:not([tabindex="-1"])'))
    .filter((el) => !el.disabled && el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden');
  const api = window.captionerModal = {
    opener: null,
    isOpen,
    open() {
      const m = modal(), p = panel();
      if (!m || !p) { return; }
      if (!isOpen()) { api.opener = document.activeElement; }
      document.body.classList.add('item-modal-open');
      m.setAttribute('role', 'dialog');
      m.setAttribute('aria-modal', 'true');
      m.setAttribute('aria-labelledby', 'item-modal-title');
      p.setAttribute('tabindex', '-1');
      p.scrollTop = 0;
      const close = document.querySelector('#item-close');
      (close || p).focus({preventScroll: true});
      m.dataset.opened = String((Number(m.dataset.opened) || 0) + 1);
    },
    close() {
      if (!isOpen()) { return; }
      document.body.classList.remove('item-modal-open');
      document.querySelectorAll('#item-modal video').forEach((v) => v.pause());
      const view = (window.captionerPlayers || {}).item;
      if (view && view.stop) { view.stop(); }
      const back = api.opener;
      api.opener = null;
      if (back && back.isConnected && back.focus) { back.focus({preventScroll: true}); }
    },
  };
  document.addEventListener('keydown', (e) => {
    if (!isOpen()) { return; }
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); api.close(); return; }
    if (e.key !== 'Tab') { return; }
    const list = focusables();
    if (!list.length) { return; }
    const first = list[0], last = list[list.length - 1], now = document.activeElement;
    if (!panel().contains(now)) { (e.shiftKey ? last : first).focus(); e.preventDefault(); }
    else if (e.shiftKey && now === first) { last.focus(); e.preventDefault(); }
    else if (!e.shiftKey && now === last) { first.focus(); e.preventDefault(); }
  }, true);
  document.addEventListener('mousedown', (e) => { if (isOpen() && e.target === modal()) { api.close(); } });
}
"""
#: After a delete or its Undo (``gallery_msg`` given): the message row, with its Undo button, becomes a toast at
#: the bottom of the window for a while (the row itself is far below the grid, out of view).
TOAST_JS = """(msg) => {
  clearTimeout(window.captionerToastTimer);
  if (!msg) { return []; }
  document.body.classList.add('gallery-toast-open');
  const undo = /Deleted/.test(msg);
  window.captionerToastTimer = setTimeout(() => document.body.classList.remove('gallery-toast-open'), undo ? 15000 : 5000);
  return [];
}"""
#: After an item is opened (its details are in): show the modal.
OPEN_ITEM_JS = "() => { if (window.captionerModal) { window.captionerModal.open(); } return []; }"
#: Close the modal (the Close button; after a delete, a restore, "more like this", another view).
CLOSE_ITEM_JS = "() => { if (window.captionerModal) { window.captionerModal.close(); } return []; }"

#: Copy the caption of the item on display (the details carry it in ``data-caption``); says so in the
#: item's message line (and in the button's ``data-copied``).
COPY_JS = """async () => {
  const box = document.querySelector('#item-details [data-caption]');
  const text = box ? box.dataset.caption : '';
  const button = document.querySelector('#copy-caption');
  const said = (ok) => {
    if (button) { button.dataset.copied = ok ? 'yes' : 'no'; }
    return ok ? '📋 Caption copied to the clipboard.' : '⚠️ The browser did not let the page copy: select the caption and copy it.';
  };
  if (!text) { return said(false); }
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return said(true); } catch (e) { /* fall back below */ }
  }
  const area = document.createElement('textarea');
  area.value = text; area.setAttribute('readonly', ''); area.style.position = 'fixed'; area.style.opacity = '0';
  document.body.appendChild(area); area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
  area.remove();
  return said(ok);
}"""

#: The list of matches beside the grid: a click (or Enter) on one opens that item in the grid.
MATCHES_JS = """
const open = (e) => {
  const row = e.target.closest ? e.target.closest('li[data-index]') : null;
  if (!row || !element.contains(row)) { return; }
  if (e.type === 'keydown' && e.key !== 'Enter' && e.key !== ' ') { return; }
  const thumbs = document.querySelectorAll('#gallery-grid .thumbnail-item');
  const thumb = thumbs[Number(row.dataset.index)];
  if (thumb) { thumb.click(); if (e.type === 'keydown') { e.preventDefault(); } }
};
element.addEventListener('click', open);
element.addEventListener('keydown', open);
"""

#: Characters kept in the name of a downloaded or imported file.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _retrieval(name: str):
    """``captioner.retrieval.<name>`` if that part of the library is there (else None)."""
    if not has_module("captioner.retrieval"):
        return None
    try:
        import captioner.retrieval as retrieval
    except Exception:  # noqa: BLE001 - a half-installed package: the control stays out
        log.exception("studio: captioner.retrieval could not be imported")
        return None
    return getattr(retrieval, name, None)


def _field(obj: Any, *names: str, default=None):
    """The first of ``names`` that ``obj`` (a dict or an object) has."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


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


class GalleryTab:
    """The Gallery tab's events (the `Studio` gives the gallery, the engine, the video player and the limits)."""

    def __init__(self, studio):
        self.studio = studio
        self.downloads = Path(tempfile.gettempdir()) / "captioner-studio" / "downloads"
        self.imports = Path(tempfile.gettempdir()) / "captioner-studio" / "imports"
        self._meaning_lock = threading.Lock()  # one by-meaning search at a time (it runs the model)

    @property
    def can_find(self) -> bool:
        return _retrieval("find") is not None

    @property
    def can_find_similar(self) -> bool:
        return _retrieval("similar") is not None

    # ------------------------------------------------------------------ the view (sort, filters, trash)
    def clean_view(self, view: Any) -> dict:
        """The session's view, every field checked (junk becomes the default)."""
        out = default_view()
        if not isinstance(view, dict):
            return out
        out["meaning"] = view.get("meaning") is True and self.can_find
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
        view["meaning"] = meaning is True and self.can_find
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
        """A by-meaning search: `captioner.retrieval.find` ranks the items by how well ``text`` fits them
        (items saved without features get them first: ``progress`` follows that)."""
        find = _retrieval("find")
        if find is None:
            raise GalleryError("Search by meaning is not available in this installation.")

        def follow(stage, done, total):
            if progress is not None and total:
                progress((min(int(done), int(total)), int(total)), desc=str(stage), unit="photos")

        with self._meaning_lock:
            matches = find(self.studio.gallery, self.studio.captioner, text, top=PER_PAGE, progress=follow)
        items, unknown = self._matched_items(matches)
        for m in matches if isinstance(matches, list) else []:
            unknown.extend(str(w) for w in _field(m, "unknown_words", "unknown", default=[]) or [])
        unknown.extend(str(w) for w in getattr(matches, "unknown_words", None) or [])
        items, closest = self._fitting(matches, items)
        found = {"query": text, "total": len(items), "page": 1, "pages": 1, "per_page": PER_PAGE,
                 "match_all": True, "items": items, "mode": "meaning",
                 "unknown_words": list(dict.fromkeys(unknown))}
        if closest is not None:
            found["closest"] = closest
        return found

    @staticmethod
    def _fitting(matches, items: list[dict]) -> tuple[list[dict], float | None]:
        """The by-meaning items that fit well: each scored one gets its match ``strength`` (0-1, see
        `captioner.retrieval.search.match_strength`) and is kept from the cutoff on; one the model could not
        score but whose words match (full text) is kept as a word match.  Also the best strength left out
        when nothing is kept (None otherwise): the page says that nothing fits well."""
        from captioner.retrieval.config import FindConfig
        from captioner.retrieval.search import match_strength

        config = FindConfig()
        by_id = {_field(m, "item_id", "id"): m for m in list(matches or [])}
        kept, best_out = [], None
        for item in items:
            m = by_id.get(item["id"])
            strength = match_strength(_field(m, "likelihood"), config) if m is not None else None
            item.pop("score", None)  # raw log-probabilities mean nothing to a reader
            if strength is None:
                if m is not None and _field(m, "fulltext_rank") is not None:
                    item["strength"] = None
                    kept.append(item)
                continue
            if strength >= config.strength_cutoff:
                item["strength"] = round(strength, 3)
                kept.append(item)
            else:
                best_out = strength if best_out is None else max(best_out, strength)
        return kept, (round(best_out, 3) if not kept and best_out is not None else None)

    def _matched_items(self, matches) -> tuple[list[dict], list[str]]:
        """The gallery's items for ranked matches (``item_id`` + ``score``), in order, each with its score."""
        items = []
        for m in list(matches or [])[:PER_PAGE]:
            item_id = _field(m, "item_id", "id")
            item = self.studio.gallery.get(item_id) if item_id is not None else None
            if item is None:
                continue
            item["score"] = _field(m, "score")
            items.append(item)
        return items, []

    def similar(self, item_id):
        """"More like this": the items most like the one on display (``item_id`` is the session's)."""
        similar = _retrieval("similar")
        if item_id is None:
            raise gr.Error("Open an item first.", print_exception=False)
        if similar is None:
            raise gr.Error("“More like this” is not available in this installation.", print_exception=False)
        with self._meaning_lock:  # items saved without features get them first (the model runs)
            matches = similar(self.studio.gallery, item_id, top=PER_PAGE + 1, captioner=self.studio.captioner)
        items, _ = self._matched_items(matches)
        items = [it for it in items if it["id"] != item_id]
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
        target = self.studio.thumbs / f"{digest}.jpg"
        if target.exists():
            return str(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            img = render.load_photo(source, THUMB_SIZE // 2)
            img.thumbnail((THUMB_SIZE, THUMB_SIZE))
            tmp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            img.save(tmp, format="JPEG", quality=85)
            os.replace(tmp, target)
            return str(target)
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

    # ------------------------------------------------------------------ one item
    def _item_view(self, item: dict):
        """The attention player's update for a photo item: the saved candidates' attention drawn in the
        browser (`library_render.item_view`); hidden for a video (the gallery keeps no attention maps for
        its shots).  The photo is the gallery's own file (checked, `_image_file`)."""
        if item.get("kind") == "video":
            return gr.HTML(value=library_render.no_item_view(), visible="hidden")
        nonce = f"{item.get('id')}-{uuid.uuid4().hex[:8]}"
        low, high = self.studio.photos.low_confidence(), self.studio.photos.high_confidence()
        source = self._image_file(item)
        if source is None:
            return gr.HTML(value=library_render.item_view(item, None, nonce, low, high=high,
                                                          error="The photo's file is not in the gallery."),
                           visible=True)
        try:
            img = open_image(source, draft_size=2 * player.DISPLAY_SIDE)
        except Exception as exc:  # noqa: BLE001 - a damaged file: the details still show, no path to the page
            log.warning("studio: item %s: its photo cannot be shown: %s", item.get("id"), exc)
            return gr.HTML(value=library_render.item_view(item, None, nonce, low, high=high,
                                                          error="The photo's file could not be read."),
                           visible=True)
        return gr.HTML(value=library_render.item_view(item, img, nonce, low, high=high), visible=True)

    def show_item(self, ids: list | None, evt: gr.SelectData):
        """A grid item clicked: (details, the item's id for the session, the item's actions)."""
        return self.open_item(ids, None, evt)[:3]

    def _details(self, item: dict, entry: dict | None = None, matched: int | None = None,
                 poster: bool = True) -> str:
        """The details HTML: a photo's facts (its picture and candidates are in the attention player), or
        a video's poster, facts and shots; then confidence, tags, where a search matched, the history."""
        try:
            history = self.studio.gallery.history(item["id"])
        except GalleryError:
            history = []
        facts = (render.video_details(item, matched=matched, poster=poster) if item.get("kind") == "video"
                 else library_render.photo_details(item))
        extras = library_render.item_extras(item, history, entry, in_player=item.get("kind") != "video")
        return library_render.with_extras(facts, extras)

    def open_item(self, ids: list | None, page: dict | None, evt: gr.SelectData):
        """A grid item clicked: `show_item`'s three values, then the video player and where it starts, the
        attention player's data (`_item_view`) and the modal's title.

        The item is looked up by id (``ids`` and ``page`` are the session's, never the browser's).  A
        video item's player plays the studio's own copy of its file (`VideoTab.served_video`); when the
        grid shows a search, it starts at the item's best matched shot ({"t": seconds, "file": name},
        else None).  A photo item hides the player.  An item in the trash (the Trash view) shows its
        details without the item's actions (`item_tools` shows Restore).
        """
        no_player = gr.Video(value=None, subtitles=None, visible="hidden")
        no_view = gr.HTML(value=library_render.no_item_view(), visible="hidden")
        hidden = gr.Column(visible=False)
        ids = ids if isinstance(ids, list) else []
        i = index_in(getattr(evt, "index", None), len(ids))
        if i is None:
            return render.empty("Pick an item in the grid."), None, hidden, no_player, None, no_view, "Item"
        item_id = ids[i]
        in_trash = isinstance(page, dict) and page.get("mode") == "trash"
        item = self.studio.gallery.get(item_id, include_trash=in_trash)
        if item is None:
            return (render.empty("This item is no longer in the gallery."), None, hidden, no_player, None, no_view,
                    "Item")
        entry = page_entry(page, item_id)
        actions = gr.Column(visible=not self.studio.read_only and not item.get("deleted_at"))
        title = library_render.item_title(item)
        if item.get("kind") != "video":
            return self._details(item, entry), item_id, actions, no_player, None, self._item_view(item), title
        matched = best_match(page, item_id)
        video, seek = self.studio.video.item_player(item, matched)
        playing = self.studio.video.served_video(item) is not None  # the player shows it: no poster beside it
        details = self._details(item, entry, matched, poster=not playing)
        return details, item_id, actions, video, seek, self._item_view(item), title

    def animation(self, item_id, evt: gr.EventData):
        """The attention player's "Animation (GIF)" for the photo on display: the GIF of candidate
        ``evt``'s index, drawn on the server only now (`photos_tab.animation_gif`); a File update.
        The item is the session's (``item_id``), its photo the gallery's own file."""
        from captioner.studio.photos_tab import animation_gif

        data = getattr(evt, "_data", None)
        data = data if isinstance(data, dict) else {}
        item = self.studio.gallery.get(item_id, include_trash=True) if item_id is not None else None
        if item is None or item.get("kind") == "video":
            raise gr.Error("Open a photo first.", print_exception=False)
        candidates = [c for c in item.get("candidates") or [] if isinstance(c, dict)]
        j = index_in(data.get("candidate"), len(candidates))
        if j is None:
            raise gr.Error("Pick one of the photo's candidates first.", print_exception=False)
        source = self._image_file(item)
        if source is None:
            raise gr.Error("The photo's file is not in the gallery.", print_exception=False)
        name = Path(str(item.get("original_name") or "photo")).name
        gif = animation_gif(render.load_photo(source), candidates[j], name, j)
        return gr.File(value=str(gif), visible="hidden")

    def item_tools(self, item_id):
        """After an item opened: its caption in the edit box, Restore shown for an item in the trash, no
        download left from another item, the photo-only buttons shown for a photo."""
        item = self.studio.gallery.get(item_id, include_trash=True) if item_id is not None else None
        writable = not self.studio.read_only
        in_trash = bool(item and item.get("deleted_at"))
        photo = bool(item and item.get("kind") != "video")
        caption = item.get("caption", "") if item and not in_trash else ""
        return (gr.Textbox(value=caption, interactive=writable and photo),
                gr.Button(visible=photo), gr.Button(visible=in_trash and writable),
                gr.File(value=None, visible=False), "")

    def edit_caption(self, item_id, text):
        """Save the edited caption of the item on display; its old caption goes to its history."""
        if item_id is None:
            raise gr.Error("Open an item first.", print_exception=False)
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}", gr.skip()
        caption = " ".join(str(text or "").split())
        if not caption:
            return "⚠️ The caption is empty: write one before saving.", gr.skip()
        if len(caption) > MAX_CAPTION_CHARS:
            return f"⚠️ The caption is too long ({len(caption)} characters; at most {MAX_CAPTION_CHARS}).", gr.skip()
        item = self.studio.gallery.get(item_id)
        if item is None:
            return "⚠️ This item is no longer in the gallery.", gr.skip()
        if item.get("kind") == "video":
            return "⚠️ A video's caption is made of its shots' captions and cannot be edited here.", gr.skip()
        if item["caption"] == caption:
            return "The caption is unchanged.", gr.skip()
        self.studio.gallery.update_caption(item_id, caption)
        item = self.studio.gallery.get(item_id)
        return f"✏️ Caption of item #{item_id} saved (the old one is in its history).", self._details(item)

    def download(self, item_id):
        """The photo on display with its caption written into its metadata (XMP dc:description, EXIF
        ImageDescription), as a file made here from the gallery's copy, in the studio's temp folder."""
        if item_id is None:
            raise gr.Error("Open an item first.", print_exception=False)
        from captioner.metadata import MetadataError, photo_with_caption, xmp_sidecar

        item = self.studio.gallery.get(item_id)
        if item is None:
            raise gr.Error("This item is no longer in the gallery.", print_exception=False)
        if item.get("kind") == "video":
            raise gr.Error("A video's captions are in its subtitles: only photos can be downloaded with "
                           "their caption.", print_exception=False)
        source = self._image_file(item)
        if source is None or not SHA256_HEX.fullmatch(str(item.get("image_hash") or "")):
            raise gr.Error("The photo's file is not in the gallery.", print_exception=False)
        original = source.read_bytes()
        sidecar = None
        try:
            data = photo_with_caption(original, item["caption"], item.get("original_name") or source.name)
        except MetadataError:  # a format that cannot hold it (GIF, BMP, HEIC): the photo and an XMP sidecar
            data, sidecar = original, xmp_sidecar(item["caption"])
        stem = _SAFE_NAME.sub("-", Path(item.get("original_name") or "photo").stem).strip("-.")[:60] or "photo"
        folder = self.downloads / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{stem}-captioned{source.suffix.lower()}"
        files = [self._write(target, data)]
        if sidecar is not None:
            files.append(self._write(target.with_name(target.name + ".xmp"), sidecar))
        self._prune(self.downloads)
        if sidecar is not None:
            return (gr.File(value=files, visible=True),
                    f"⬇️ {html.escape(target.suffix.upper()[1:])} files cannot hold a caption: it is in "
                    f"{html.escape(Path(files[1]).name)} beside the photo (photo managers read it).")
        return gr.File(value=files, visible=True), f"⬇️ {html.escape(target.name)} has the caption in its metadata."

    @staticmethod
    def _write(target: Path, data: bytes) -> str:
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return str(target)

    @staticmethod
    def _prune(folder: Path, keep_s: float = 3600) -> None:
        """Remove download folders older than an hour (the browser has them by then)."""
        now = time.time()
        for sub in folder.iterdir() if folder.is_dir() else []:
            try:
                if sub.is_dir() and now - sub.stat().st_mtime > keep_s:
                    shutil.rmtree(sub, ignore_errors=True)
            except OSError:
                pass

    # ------------------------------------------------------------------ delete, undo, trash
    @staticmethod
    def clear_item():
        """Saved items <-> Trash: the item on display belonged to the other view; put it away."""
        return (render.empty("Pick an item in the grid to see its details."), None, gr.Column(visible=False),
                gr.Button(visible=False), gr.Video(value=None, subtitles=None, visible="hidden"), None)

    @staticmethod
    def hide_player(item_id):
        """After a delete: no item on display, no player."""
        if item_id is None:
            return gr.Video(value=None, subtitles=None, visible="hidden"), None
        return gr.skip(), gr.skip()

    def delete(self, item_id, confirmed=True):
        """Move the item on display to the trash (``item_id`` is the session's, never the browser's).

        Returns (message, the item on display, its actions, the details, the Undo button, the item
        Undo restores)."""
        hidden = gr.Column(visible=False)
        pick = render.empty("Pick an item in the grid to see its details.")
        if item_id is None:
            return "", None, hidden, pick, gr.skip(), gr.skip()
        if confirmed is not True:  # the user said no in the confirmation box
            return "", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if self.studio.read_only:
            return (f"⚠️ {html.escape(self.studio.read_only_message())}", gr.skip(), gr.skip(), gr.skip(),
                    gr.skip(), gr.skip())
        removed = self.studio.gallery.delete(item_id)
        if not removed:
            return f"Item #{item_id} was already gone.", None, hidden, pick, gr.Button(visible=False), None
        return (f"🗑️ Deleted item #{item_id} (moved to the trash).", None, hidden, pick,
                gr.Button(visible=True), item_id)

    def delete_confirmed(self, item_id, code, request: gr.Request = None):
        """The Delete button: `delete` only with the code the server gave this page for it (`Studio.confirmed`)."""
        return self.delete(item_id, self.studio.confirmed("delete", code, request))

    def undo(self, deleted_id):
        """Undo the session's last delete: the item comes back from the trash."""
        if deleted_id is None:
            return "Nothing to undo.", gr.Button(visible=False), None
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}", gr.skip(), gr.skip()
        if self.studio.gallery.restore(deleted_id):
            return f"↩️ Item #{deleted_id} is back.", gr.Button(visible=False), None
        return f"Item #{deleted_id} is no longer in the trash.", gr.Button(visible=False), None

    def after_delete(self, query, page_no, view, page, deleted_id):
        """After a delete: the list the user was in, without the item.  A by-meaning or "more like this" list
        keeps its order (it is not searched again: that would go back to the search before it); it remembers
        where the item was, for Undo.  A word search or the listing is run again, on the same page."""
        if isinstance(page, dict) and page.get("mode") in ("meaning", "similar"):
            items = [it for it in page.get("items") or [] if isinstance(it, dict)]
            at = next((i for i, it in enumerate(items) if it.get("id") == deleted_id), None)
            if at is None:
                return gr.skip(), page
            kept = dict(page, items=items[:at] + items[at + 1:], total=max(0, int(page.get("total") or 0) - 1),
                        removed={"index": at, "entry": items[at]})
            return gr.skip(), kept
        return self.search(query, page_no, view)

    def undo_in_list(self, deleted_id, page):
        """Undo (`undo`); the session's list keeps what it needs to put the item back in its place."""
        message, button, last = self.undo(deleted_id)
        back = isinstance(page, dict) and isinstance(page.get("removed"), dict) and "back" in message
        if isinstance(page, dict) and page.get("removed") and not back:
            page = {k: v for k, v in page.items() if k != "removed"}
        return message, button, last, page

    def after_undo(self, query, page_no, view, page):
        """After Undo: a by-meaning or "more like this" list gets the item back in its place; any other list
        is searched again."""
        removed = page.get("removed") if isinstance(page, dict) else None
        if isinstance(removed, dict) and page.get("mode") in ("meaning", "similar"):
            items = list(page.get("items") or [])
            at = min(int_value(removed.get("index"), 0, len(items), len(items)), len(items))
            items.insert(at, removed.get("entry"))
            back = {k: v for k, v in page.items() if k != "removed"}
            return gr.skip(), dict(back, items=items, total=int(page.get("total") or 0) + 1)
        return self.search(query, page_no, view)

    def restore(self, item_id):
        """Trash view: take the item on display out of the trash."""
        if item_id is None:
            raise gr.Error("Open an item in the trash first.", print_exception=False)
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}", gr.skip(), gr.skip()
        pick = render.empty("Pick an item in the grid to see its details.")
        if self.studio.gallery.restore(item_id):
            return f"↩️ Item #{item_id} is back in the gallery.", None, pick
        return f"Item #{item_id} is not in the trash.", None, pick

    def empty_trash(self, confirmed=True):
        """Remove every item in the trash for good (after the user said yes)."""
        if confirmed is not True:
            return ""
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}"
        n = self.studio.gallery.empty_trash()
        return f"Emptied the trash: {n} item{'s' if n != 1 else ''} removed for good."

    def empty_trash_confirmed(self, code, request: gr.Request = None):
        """The Empty trash button: `empty_trash` only with the code the server gave this page for it."""
        return self.empty_trash(self.studio.confirmed("empty_trash", code, request))

    def export(self, fmt):
        fmt = str(fmt or "json").lower()
        if fmt not in EXPORT_FORMATS:
            raise gr.Error(f"Unknown export format {fmt[:20]!r}: use json or csv.", print_exception=False)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.studio.gallery.export(self.studio.exports / f"captioner-gallery-{stamp}.{fmt}", fmt)
        return gr.File(value=str(path), visible=True), f"Exported {self.studio.gallery.count()} items as {fmt.upper()}."

    # ------------------------------------------------------------------ import a folder
    def _uploads(self, files) -> list[str]:
        paths = file_paths(files)
        if self.studio.upload_dir is not None:
            for path in paths:
                if not is_inside(path, self.studio.upload_dir):
                    log.warning("studio: refused an import file that is not an upload: %s", path)
                    raise gr.Error("Only folders uploaded to the studio can be imported.", print_exception=False)
        return paths

    def import_folder(self, files, progress=gr.Progress()):
        """Caption and save every photo of an uploaded folder: duplicates (the same photo already in the
        gallery) skipped, files that are not photos or cannot be read reported, the others saved."""
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}"
        paths = self._uploads(files)
        if not paths:
            return "Choose a folder first."
        if len(paths) > MAX_IMPORT_FILES:
            return (f"⚠️ The folder has {len(paths)} files; the studio imports at most {MAX_IMPORT_FILES} at a time "
                    "(use `captioner gallery add DIR` for more).")
        photos = [p for p in paths if Path(p).suffix.lower() in PHOTO_SUFFIXES]
        ignored = len(paths) - len(photos)
        if not photos:
            return f"⚠️ No photos in that folder ({ignored} other file{'s' if ignored != 1 else ''})."
        folder = self.imports / uuid.uuid4().hex
        try:
            staged = self._stage(photos, folder)
            report = self._import_staged(staged, folder, progress)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return import_message(report, ignored)

    @staticmethod
    def _stage(paths: list[str], folder: Path) -> list[Path]:
        """The uploads in one folder of the studio's own, under their own names (hard links where possible)."""
        folder.mkdir(parents=True, exist_ok=True)
        staged, used = [], set()
        for path in paths:
            name = _SAFE_NAME.sub("_", Path(path).name).strip("._") or "photo"
            stem, suffix, n = Path(name).stem, Path(name).suffix, 1
            while name.lower() in used:
                n += 1
                name = f"{stem}-{n}{suffix}"
            used.add(name.lower())
            target = folder / name
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
            staged.append(target)
        return staged

    def _import_staged(self, staged: list[Path], folder: Path, progress) -> dict:
        """{"saved": [names], "skipped": [names], "failed": [(name, reason)]}, by `captioner.retrieval.import_folders`
        when the library has it, else photo by photo here."""
        import_folders = _retrieval("import_folders")
        total = len(staged)
        progress((0, total), desc="Importing", unit="photos")
        if import_folders is not None:
            def report(*args, **kwargs):
                done = _field(kwargs, "done")
                if done is None and args and isinstance(args[0], (int, float)):
                    done = args[0]
                if isinstance(done, (int, float)):
                    progress((min(int(done), total), total), desc="Importing", unit="photos")
            summary = import_folders(self.studio.gallery, self.studio.captioner, [folder], progress=report)
            inside = str(folder) + os.sep  # the studio's staging folder is no business of the user's
            failed = [(str(name).replace(inside, ""), str(reason).replace(inside, ""))
                      for name, reason in _field(summary, "failed", "errors", default=[]) or []]
            return {"saved": list(_field(summary, "saved", "added", default=[]) or []),
                    "skipped": list(_field(summary, "skipped", "duplicates", default=[]) or []),
                    "failed": failed}
        return self._import_here(staged, progress)

    def _import_here(self, staged: list[Path], progress) -> dict:
        from captioner.inputs.sources import InputItem

        saved, skipped, failed = [], [], []
        items = [InputItem(p.name, str(p)) for p in staged]
        for i, result in enumerate(self.studio.captioner.caption_many(items, batch_size=4, keep_features=True)):
            name = staged[i].name
            if result.error is not None or not result.candidates:
                failed.append((name, str(result.error or "no caption").replace(str(staged[i]), name)))
            else:
                try:
                    self.studio.gallery.save_result(str(staged[i]), result, name=name, model=self.studio.model_name)
                    saved.append(name)
                except DuplicateItemError:
                    skipped.append(name)
                except GalleryError as exc:
                    failed.append((name, str(exc).replace(str(staged[i]), name)))
            progress((i + 1, len(staged)), desc=f"Imported {name}", unit="photos")
        return {"saved": saved, "skipped": skipped, "failed": failed}

    # ------------------------------------------------------------------ layout
    def build(self) -> list:
        """The tab's widgets and events (inside ``gr.Tabs``); returns the components with heavy values."""
        writable = not self.studio.read_only
        with gr.Tab("Gallery", id="gallery", elem_id="tab-gallery") as gallery_tab:
            gr.HTML(f"<style>{library_render.CSS}</style>", elem_id="gallery-style", js_on_load=None,
                    padding=False)
            grid_page = gr.State(None, time_to_live=SESSION_TTL_S)
            grid_ids = gr.State([], time_to_live=SESSION_TTL_S)
            view = gr.State(default_view(), time_to_live=SESSION_TTL_S)
            last_deleted = gr.State(None, time_to_live=SESSION_TTL_S)
            search_json = gr.JSON(visible=False, label="Search result")
            with gr.Row(equal_height=True):
                query = gr.Textbox(value="", label="Search captions", scale=4, elem_id="search-box",
                                   placeholder='e.g. dog grass · dog OR cat · dog NOT lake · "red ball"',
                                   submit_btn=False)
                search_btn = gr.Button("Search", variant="primary", scale=0, min_width=120,
                                       elem_id="search-button")
            meaning = gr.Checkbox(value=False, label="By meaning: describe the photo in your own words",
                                  elem_id="meaning-toggle", visible=self.can_find, container=False)
            with_candidates = gr.Checkbox(value=False, container=False, elem_id="search-candidates",
                                          label="Also search the candidates I did not pick")
            gr.Markdown(library_render.SEARCH_HELP, elem_id="search-help")
            with gr.Accordion("Sort and filter", open=False, elem_id="gallery-filters"):
                with gr.Row():
                    sort = gr.Dropdown(list(SORTS), value=DEFAULT_SORT, label="Sort", elem_id="gallery-sort",
                                       min_width=160)
                    model = gr.Dropdown([ALL_MODELS], value=ALL_MODELS, label="Model", elem_id="gallery-model",
                                        min_width=160)
                    kind = gr.Radio(list(KINDS), value="Photos and videos", label="Kind", elem_id="gallery-kind",
                                    min_width=200)
                with gr.Row():
                    saved_from = gr.Textbox(label="Saved from", placeholder="YYYY-MM-DD", elem_id="saved-from",
                                            min_width=140)
                    saved_to = gr.Textbox(label="Saved to", placeholder="YYYY-MM-DD", elem_id="saved-to",
                                          min_width=140)
                    which = gr.Radio(list(VIEWS), value=VIEWS[0], label="Show", elem_id="gallery-view",
                                     min_width=200)
            with gr.Row(equal_height=True):
                prev_btn = gr.Button("← Previous", size="sm", scale=0, min_width=90, interactive=False,
                                     elem_id="page-prev")
                page_line_md = gr.Markdown("", elem_id="page-line")
                next_btn = gr.Button("Next →", size="sm", scale=0, min_width=90, interactive=False,
                                     elem_id="page-next")
            page_no = gr.Number(value=1, precision=0, label="page", visible=False)
            with gr.Row(elem_id="gallery-results"):
                grid = gr.Gallery(label="Saved captions", show_label=False, columns=6, height="auto",
                                  fit_columns=False, allow_preview=False, object_fit="cover",
                                  elem_id="gallery-grid", interactive=False, buttons=[], scale=3, min_width=300)
                matches = gr.HTML("", elem_id="search-matches", js_on_load=MATCHES_JS, visible=False,
                                  scale=2, min_width=260, max_height=720)
            # after a delete (or its undo) this row is a toast at the bottom of the window (TOAST_JS)
            with gr.Row(equal_height=True, elem_id="gallery-toast"):
                gallery_msg = gr.Markdown("", elem_id="gallery-message")
                undo_btn = gr.Button("Undo", size="sm", scale=0, min_width=90, visible=False,
                                     elem_id="gallery-undo")
                empty_btn = gr.Button("Empty trash", size="sm", variant="stop", scale=0, min_width=130,
                                      visible=False, elem_id="empty-trash")
            selected = gr.State(None, time_to_live=SESSION_TTL_S)
            # The item modal: shown over the page while the body has .item-modal-open (ITEM_MODAL_JS).
            with gr.Column(elem_id="item-modal"), gr.Column(elem_id="item-panel"):
                # the head stays at the top while the window scrolls: the title, Close, the saved caption
                # (first: what the user chose, before the model's candidates) and the item's actions
                with gr.Column(elem_id="item-modal-head"):
                    with gr.Row(elem_id="item-modal-bar", equal_height=True):
                        item_title = gr.HTML("Item", elem_id="item-modal-title", padding=False, min_width=0)
                        close_btn = gr.Button("✕ Close", size="sm", scale=0, min_width=100, elem_id="item-close")
                    restore_btn = gr.Button("Restore this item", visible=False, size="sm", elem_id="restore-button")
                    with gr.Column(visible=False, elem_id="item-actions") as item_actions:
                        caption_edit = gr.Textbox(label="Saved caption (edit it, then Save caption)",
                                                  max_length=MAX_CAPTION_CHARS, elem_id="caption-edit",
                                                  interactive=writable, lines=1)
                        with gr.Row():
                            save_edit = gr.Button("Save caption", scale=0, min_width=120, size="sm",
                                                  variant="primary", elem_id="save-caption")
                            copy_btn = gr.Button("Copy caption", size="sm", scale=0, min_width=120,
                                                 elem_id="copy-caption")
                            download_btn = gr.Button("Download photo with caption", size="sm", scale=0,
                                                     min_width=210, elem_id="download-photo")
                            similar_btn = gr.Button("More like this", size="sm", scale=0, min_width=120,
                                                    elem_id="more-like-this", visible=self.can_find_similar)
                            delete_btn = gr.Button("Delete this item", variant="stop", size="sm", scale=0,
                                                   min_width=140, elem_id="delete-button")
                        tools_msg = gr.Markdown("", elem_id="item-message")
                        download_file = gr.File(label="Photo with its caption", visible=False, interactive=False,
                                                file_count="multiple", elem_id="download-file")
                item_player = gr.Video(label="Video", interactive=False, visible="hidden",
                                       elem_id="item-player")
                item_seek = gr.JSON(value=None, visible=False, label="Start at")
                item_view = gr.HTML(library_render.no_item_view(), html_template="<div class='pv-mount'></div>",
                                    js_on_load=player.player_js(), apply_default_css=False, elem_id="item-view",
                                    min_height=120, visible="hidden")
                anim_file = gr.File(label="Attention animation (GIF)", visible="hidden", interactive=False,
                                    elem_id="item-animation-file")
                details = gr.HTML(render.empty("Pick an item in the grid to see its details."),
                                  elem_id="item-details", js_on_load=ITEM_SHOTS_JS + ITEM_MODAL_JS)
            # the one-time code of a confirmation box (`Studio.confirm_code`): sent back only on "yes"
            confirm_code = gr.Textbox(value="", visible=False, label="confirmation")
            with gr.Accordion("Export the gallery", open=False):
                with gr.Row(equal_height=True):
                    fmt = gr.Radio(list(EXPORT_FORMATS), value="json", label="Format", scale=1,
                                   info="CSV: one row per item, no attention maps; JSON: everything")
                    export_btn = gr.Button("Export", scale=1, elem_id="export-button")
                export_file = gr.File(label="Download", visible=False, interactive=False,
                                      elem_id="export-file")
            with gr.Accordion("Import a folder of photos", open=False, visible=writable, elem_id="import-box"):
                gr.Markdown("Each photo is captioned and saved; photos already in the gallery are skipped "
                            "and files that cannot be read are listed. (The studio only sees the files you "
                            "upload here.)")
                import_files = gr.File(file_count="directory", label="Folder", elem_id="import-folder",
                                       height=140)
                import_btn = gr.Button("Import", variant="primary", elem_id="import-button")
                import_msg = gr.Markdown("", elem_id="import-message")

        def forget(event):
            """Once the pictures are in the browser, the server drops its copy."""
            return event.then(self.studio.forget_rendered, None, None, api_visibility="private", queue=False,
                              show_progress="hidden")

        grid_outputs = [grid, page_line_md, page_no, grid_ids, prev_btn, next_btn, matches]

        def then_show(event):
            shown = event.then(user_errors(self.show_grid), [grid_page], grid_outputs,
                               api_visibility="private", show_progress="hidden")
            shown.then(trash_controls, [view], [empty_btn], api_visibility="private", queue=False,
                       show_progress="hidden")
            return shown

        def then_search(event):
            return then_show(event.then(user_errors(self.search), [query, page_no, view], [search_json, grid_page],
                                        api_visibility="private", show_progress_on=[grid]))

        # The search box starts again at page 1 (the js step; API callers pass the page).
        then_show(gr.on([search_btn.click, query.submit], user_errors(self.search), [query, page_no, view],
                        [search_json, grid_page], api_name="search", js="(q, p, v) => [q, 1, v]",
                        show_progress_on=[grid]))
        then_show(gallery_tab.select(user_errors(self.search), [query, page_no, view], [search_json, grid_page],
                                     api_visibility="private", show_progress="hidden"))
        gallery_tab.select(user_errors(self.model_choices), None, [model], api_visibility="private",
                           show_progress="hidden")
        then_search(prev_btn.click(None, [page_no], [page_no], js="(p) => Math.max(1, (p || 1) - 1)"))
        then_search(next_btn.click(None, [page_no], [page_no], js="(p) => (p || 1) + 1"))
        view_inputs = [meaning, sort, model, kind, saved_from, saved_to, which, with_candidates]
        then_search(gr.on([meaning.input, sort.input, model.input, kind.input, which.input, with_candidates.input,
                           saved_from.submit,
                           saved_to.submit, saved_from.blur, saved_to.blur],
                          user_errors(self.set_view), view_inputs, [view, page_no], api_visibility="private",
                          show_progress="hidden", trigger_mode="always_last"))

        def then_close(event):
            """...and the item modal closes (what follows is on the page under it)."""
            event.success(None, None, None, js=CLOSE_ITEM_JS, queue=False, show_progress="hidden")
            return event

        then_close(which.input(self.clear_item, None,
                               [details, selected, item_actions, restore_btn, item_player, item_seek],
                               api_visibility="private", queue=False, show_progress="hidden"))
        close_btn.click(None, None, None, js=CLOSE_ITEM_JS, queue=False, show_progress="hidden")
        opened = grid.select(user_errors(self.open_item), [grid_ids, grid_page],
                             [details, selected, item_actions, item_player, item_seek, item_view, item_title],
                             api_visibility="private", show_progress_on=[details])
        forget(opened)
        opened.then(None, None, None, js=OPEN_ITEM_JS, queue=False, show_progress="hidden")
        opened.then(None, [item_seek], None, js=GALLERY_SEEK_JS, queue=False, show_progress="hidden")
        opened.then(user_errors(self.item_tools), [selected],
                    [caption_edit, download_btn, restore_btn, download_file, tools_msg],
                    api_visibility="private", queue=False, show_progress="hidden")
        opened.then(lambda: gr.File(value=None, visible="hidden"), None, [anim_file], api_visibility="private",
                    queue=False, show_progress="hidden")
        item_view.download(user_errors(self.animation), [selected], [anim_file], api_visibility="private",
                           show_progress="minimal")
        anim_file.change(None, [anim_file], None, js=player.gif_offer_js("item-view"), queue=False,
                         show_progress="hidden")

        forget(save_edit.click(user_errors(self.edit_caption), [selected, caption_edit], [tools_msg, details],
                               api_visibility="private", show_progress_on=[details]))
        copy_btn.click(None, None, [tools_msg], js=COPY_JS, queue=False, show_progress="hidden")
        download_btn.click(user_errors(self.download), [selected], [download_file, tools_msg],
                           api_visibility="private", show_progress="minimal")
        then_close(then_show(similar_btn.click(user_errors(self.similar), [selected], [grid_page],
                                               api_visibility="private", show_progress_on=[grid])))

        # The item to delete is the session's (a State); the browser only says yes (the server's
        # one-time code for this question) or no.
        asked = delete_btn.click(self.studio.confirm_code("delete"), None, [confirm_code], api_visibility="private",
                                 queue=False, show_progress="hidden")
        deleted = asked.then(user_errors(self.delete_confirmed), [selected, confirm_code],
                             [gallery_msg, selected, item_actions, details, undo_btn, last_deleted],
                             api_visibility="private",
                             js="(id, code) => { const ok = confirm('Delete this item? (It goes to the trash: "
                                "Undo brings it back.)'); if (ok && window.captionerModal) "
                                "{ window.captionerModal.close(); } return [id, ok ? code : '']; }")
        # the list the user was in, without the item; the message and Undo as a toast where the user looks
        then_show(deleted.then(user_errors(self.after_delete), [query, page_no, view, grid_page, last_deleted],
                               [search_json, grid_page], api_visibility="private", show_progress="hidden"))
        deleted.then(None, [gallery_msg], None, js=TOAST_JS, queue=False, show_progress="hidden")
        deleted.then(self.hide_player, [selected], [item_player, item_seek], api_visibility="private",
                     queue=False, show_progress="hidden")
        undone = undo_btn.click(user_errors(self.undo_in_list), [last_deleted, grid_page],
                                [gallery_msg, undo_btn, last_deleted, grid_page],
                                api_visibility="private", show_progress="hidden")
        then_show(undone.then(user_errors(self.after_undo), [query, page_no, view, grid_page],
                              [search_json, grid_page], api_visibility="private", show_progress="hidden"))
        undone.then(None, [gallery_msg], None, js=TOAST_JS, queue=False, show_progress="hidden")
        restored = restore_btn.click(user_errors(self.restore), [selected], [gallery_msg, selected, details],
                                     api_visibility="private", show_progress="hidden")
        restored.then(lambda: gr.Button(visible=False), None, [restore_btn], api_visibility="private",
                      queue=False, show_progress="hidden")
        then_search(restored)
        then_close(restored)
        asked = empty_btn.click(self.studio.confirm_code("empty_trash"), None, [confirm_code],
                                api_visibility="private", queue=False, show_progress="hidden")
        then_search(asked.then(user_errors(self.empty_trash_confirmed), [confirm_code], [gallery_msg],
                               api_visibility="private",
                               js="(code) => [confirm('Remove every item in the trash for good? "
                                  "This cannot be undone.') ? code : '']"))
        export_btn.click(user_errors(self.export), [fmt], [export_file, gallery_msg], api_visibility="private")
        then_search(import_btn.click(user_errors(self.import_folder), [import_files], [import_msg],
                                     api_visibility="private", show_progress_on=[import_msg],
                                     concurrency_id="engine", concurrency_limit=1))
        return [details, item_view]


def trash_controls(view):
    """The "Empty trash" button shows in the Trash view only."""
    return gr.Button(visible=isinstance(view, dict) and view.get("trash") is True)


def import_message(report: dict, ignored: int = 0) -> str:
    saved, skipped, failed = report.get("saved", []), report.get("skipped", []), report.get("failed", [])
    parts = [f"✅ Imported **{len(saved)}** photo{'s' if len(saved) != 1 else ''}"]
    if skipped:
        parts.append(f"{len(skipped)} already in the gallery (skipped)")
    if failed:
        parts.append(f"{len(failed)} could not be read")
    if ignored:
        parts.append("1 file that is not a photo ignored" if ignored == 1
                     else f"{ignored} files that are not photos ignored")
    lines = [" · ".join(parts) + "."]
    for entry in failed[:20]:
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            name, reason = entry
        else:
            name, reason = _field(entry, "name", "path", default="?"), _field(entry, "error", "reason", default="")
        lines.append(f"- {html.escape(Path(str(name)).name)}: {html.escape(str(reason))}")
    if len(failed) > 20:
        lines.append(f"- … and {len(failed) - 20} more")
    return "\n".join(lines)


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
