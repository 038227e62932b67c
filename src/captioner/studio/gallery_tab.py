"""The studio's Gallery tab: browse and search the saved captions, open an item (a photo, or a video
that plays from its matched shot), delete it, export the gallery.

Every item shown is one the server looked up; the session keeps the page (``gr.State``) and the
browser's event values are indexes into it, never file names.
"""
from __future__ import annotations

import html
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr

from captioner.storage import GalleryError
from captioner.studio import render
from captioner.studio.values import SESSION_TTL_S, SHA256_HEX, index_in, int_value, user_errors
from captioner.studio.video_tab import GALLERY_SEEK_JS, ITEM_SHOTS_JS

log = logging.getLogger("captioner.studio")

#: Items per page of the grid.
PER_PAGE = 24
#: Side of the grid's thumbnails (px).
THUMB_SIZE = 320
EXPORT_FORMATS = ("json", "csv")


class GalleryTab:
    """The Gallery tab's events (the `Studio` gives the gallery, the video player and the limits)."""

    def __init__(self, studio):
        self.studio = studio

    # ------------------------------------------------------------------ gallery
    def search(self, query, page):
        """API ``/search``: one page of gallery items matching ``query`` (all items if empty).

        Returns (JSON for the caller, the page for this session's grid).  The grid is drawn
        from the second, which stays on the server: nothing the browser sends back names a file.
        """
        text = "" if query is None else str(query)
        page_no = int_value(page, 1, 10**9, 1)
        try:
            result = self.studio.gallery.search(text, page_no, PER_PAGE)
            if result.page > result.pages and result.total:  # e.g. after deleting the last item of a page
                result = self.studio.gallery.search(text, result.pages, PER_PAGE)
        except GalleryError as exc:
            gr.Warning(str(exc))
            found = {"query": text, "total": 0, "page": 1, "pages": 1, "per_page": PER_PAGE, "match_all": True,
                     "items": [], "error": str(exc)}
            return found, grid_page_of(found)
        found = {"query": text, "total": result.total, "page": result.page, "pages": result.pages,
                 "per_page": result.per_page, "match_all": result.match_all, "items": result.items}
        return found, grid_page_of(found)

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
        """After /search: the grid, the page line, the page number and the ids shown.

        ``page`` is the session's copy of the search result (a ``gr.State``), not the JSON the
        browser holds.
        """
        page = page if isinstance(page, dict) else grid_page_of(None)
        shown, ids = [], []
        for item in page.get("items", []):
            thumb = self._thumb(item)
            if thumb:
                shown.append((thumb, render.grid_label(item)))
                ids.append(item["id"])
        total, query = page.get("total", 0), page.get("query", "")
        if total == 0:
            line = (f"No saved caption matches “{html.escape(query)}”." if query.strip()
                    else "The gallery is empty: caption a photo and save it.")
        else:
            what = f"matching “{html.escape(query)}”" if query.strip() else "saved, newest first"
            line = f"**{total}** item{'s' if total != 1 else ''} {what} · page {page['page']} of {page['pages']}"
            if not page.get("match_all", True):
                line += " · no item has every word; showing items with any of them"
        return (gr.Gallery(value=shown, selected_index=None), line, page.get("page", 1), ids,
                gr.Button(interactive=page.get("page", 1) > 1),
                gr.Button(interactive=page.get("page", 1) < page.get("pages", 1)))

    def show_item(self, ids: list | None, evt: gr.SelectData):
        """A grid item clicked: (details, the item's id for the session, the item's actions row)."""
        return self.open_item(ids, None, evt)[:3]

    def open_item(self, ids: list | None, page: dict | None, evt: gr.SelectData):
        """A grid item clicked: `show_item`'s three values, then the video player and where it starts.

        The item is looked up by id (``ids`` and ``page`` are the session's, never the browser's).  A
        video item's player plays the studio's own copy of its file (`VideoTab.served_video`); when the
        grid shows a search, it starts at the item's best matched shot ({"t": seconds, "file": name},
        else None).  A photo item hides the player.
        """
        no_player = gr.Video(value=None, subtitles=None, visible="hidden")
        ids = ids if isinstance(ids, list) else []
        i = index_in(getattr(evt, "index", None), len(ids))
        if i is None:
            return render.empty("Pick an item in the grid."), None, gr.Row(visible=False), no_player, None
        item_id = ids[i]
        item = self.studio.gallery.get(item_id)
        if item is None:
            return (render.empty("This item is no longer in the gallery."), None, gr.Row(visible=False),
                    no_player, None)
        actions = gr.Row(visible=not self.studio.read_only)
        if item.get("kind") != "video":
            return render.item_details(item), item_id, actions, no_player, None
        matched = best_match(page, item_id)
        player, seek = self.studio.video.item_player(item, matched)
        return render.item_details(item, matched=matched), item_id, actions, player, seek

    @staticmethod
    def hide_player(item_id):
        """After a delete: no item on display, no player."""
        if item_id is None:
            return gr.Video(value=None, subtitles=None, visible="hidden"), None
        return gr.skip(), gr.skip()

    def delete(self, item_id, confirmed=True):
        """Delete the item on display (``item_id`` is the session's, never the browser's)."""
        hidden = gr.Row(visible=False)
        if item_id is None:
            return "", None, hidden, render.empty("Pick an item in the grid to see its details.")
        if confirmed is not True:  # the user said no in the confirmation box
            return "", gr.skip(), gr.skip(), gr.skip()
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}", gr.skip(), gr.skip(), gr.skip()
        removed = self.studio.gallery.delete(item_id)
        message = f"🗑️ Deleted item #{item_id}." if removed else f"Item #{item_id} was already gone."
        return message, None, hidden, render.empty("Pick an item in the grid to see its details.")

    def export(self, fmt):
        fmt = str(fmt or "json").lower()
        if fmt not in EXPORT_FORMATS:
            raise gr.Error(f"Unknown export format {fmt[:20]!r}: use json or csv.", print_exception=False)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.studio.gallery.export(self.studio.exports / f"captioner-gallery-{stamp}.{fmt}", fmt)
        return gr.File(value=str(path), visible=True), f"Exported {self.studio.gallery.count()} items as {fmt.upper()}."

    # ------------------------------------------------------------------ layout
    def build(self) -> list:
        """The tab's widgets and events (inside ``gr.Tabs``); returns the components with heavy values."""
        with gr.Tab("Gallery", id="gallery", elem_id="tab-gallery") as gallery_tab:
            grid_page = gr.State(None, time_to_live=SESSION_TTL_S)
            grid_ids = gr.State([], time_to_live=SESSION_TTL_S)
            search_json = gr.JSON(visible=False, label="Search result")
            with gr.Row(equal_height=True):
                query = gr.Textbox(value="", label="Search captions", placeholder="e.g. dog grass (word* for prefixes)",
                                   scale=4, elem_id="search-box", submit_btn=False)
                search_btn = gr.Button("Search", variant="primary", scale=0, min_width=140,
                                       elem_id="search-button")
            with gr.Row(equal_height=True):
                prev_btn = gr.Button("← Newer", size="sm", scale=0, min_width=90, interactive=False,
                                     elem_id="page-prev")
                page_line = gr.Markdown("", elem_id="page-line")
                next_btn = gr.Button("Older →", size="sm", scale=0, min_width=90, interactive=False,
                                     elem_id="page-next")
            page_no = gr.Number(value=1, precision=0, label="page", visible=False)
            grid = gr.Gallery(label="Saved captions", show_label=False, columns=6, height="auto", fit_columns=False, allow_preview=False,
                              object_fit="cover", elem_id="gallery-grid", interactive=False,
                              buttons=[])
            gallery_msg = gr.Markdown("", elem_id="gallery-message")
            selected = gr.State(None, time_to_live=SESSION_TTL_S)
            item_player = gr.Video(label="Video", interactive=False, visible="hidden",
                                   elem_id="item-player")
            item_seek = gr.JSON(value=None, visible=False, label="Start at")
            details = gr.HTML(render.empty("Pick an item in the grid to see its details."),
                              elem_id="item-details", js_on_load=ITEM_SHOTS_JS)
            with gr.Row(visible=False) as item_actions:
                delete_btn = gr.Button("Delete this item", variant="stop", size="sm", scale=0,
                                       min_width=160, elem_id="delete-button")
            confirmed = gr.Checkbox(value=False, visible=False, label="confirmed")
            with gr.Accordion("Export the gallery", open=False):
                with gr.Row(equal_height=True):
                    fmt = gr.Radio(list(EXPORT_FORMATS), value="json", label="Format", scale=1)
                    export_btn = gr.Button("Export", scale=1, elem_id="export-button")
                export_file = gr.File(label="Download", visible=False, interactive=False,
                                      elem_id="export-file")

        def forget(event):
            """Once the pictures are in the browser, the server drops its copy."""
            return event.then(self.studio.forget_rendered, None, None, api_visibility="private", queue=False,
                              show_progress="hidden")

        grid_outputs = [grid, page_line, page_no, grid_ids, prev_btn, next_btn]

        def then_show(event):
            return event.then(user_errors(self.show_grid), [grid_page], grid_outputs,
                              api_visibility="private", show_progress="hidden")

        def then_search(event):
            return then_show(event.then(user_errors(self.search), [query, page_no], [search_json, grid_page],
                                        api_visibility="private", show_progress="hidden"))

        # The search box starts again at page 1 (the js step; API callers pass the page).
        then_show(gr.on([search_btn.click, query.submit], user_errors(self.search), [query, page_no],
                        [search_json, grid_page], api_name="search", js="(q, p) => [q, 1]"))
        then_show(gallery_tab.select(user_errors(self.search), [query, page_no], [search_json, grid_page],
                                     api_visibility="private", show_progress="hidden"))
        then_search(prev_btn.click(None, [page_no], [page_no], js="(p) => Math.max(1, (p || 1) - 1)"))
        then_search(next_btn.click(None, [page_no], [page_no], js="(p) => (p || 1) + 1"))
        opened = grid.select(user_errors(self.open_item), [grid_ids, grid_page],
                             [details, selected, item_actions, item_player, item_seek],
                             api_visibility="private", show_progress_on=[details])
        forget(opened)
        opened.then(None, [item_seek], None, js=GALLERY_SEEK_JS, queue=False, show_progress="hidden")
        # The item to delete is the session's (a State); the browser only says yes or no.
        deleted = delete_btn.click(user_errors(self.delete), [selected, confirmed],
                                   [gallery_msg, selected, item_actions, details],
                                   api_visibility="private",
                                   js="(id, ok) => [id, confirm('Delete this item from the gallery?')]")
        then_search(deleted)
        deleted.then(self.hide_player, [selected], [item_player, item_seek], api_visibility="private",
                     queue=False, show_progress="hidden")
        export_btn.click(user_errors(self.export), [fmt], [export_file, gallery_msg], api_visibility="private")
        return [details]


def grid_item(it: dict) -> dict:
    kept = {"id": it["id"], "caption": it["caption"], "image_hash": it["image_hash"], "image_path": it["image_path"]}
    if it.get("kind") == "video":  # and the matched shots, no more (a photo's entry stays these four keys)
        kept["kind"] = "video"
        kept["matched_segments"] = [{"idx": m.get("idx"), "start": m.get("start"), "end": m.get("end"),
                                     "caption": m.get("caption")}
                                    for m in it.get("matched_segments") or [] if isinstance(m, dict)]
    return kept


def grid_page_of(found: dict | None) -> dict:
    """What the session keeps of a search result to draw the grid: ids, captions, the server's file paths
    and, for videos, the matched shots (best first)."""
    found = found or {}
    return {"query": found.get("query", ""), "total": found.get("total", 0), "page": found.get("page", 1),
            "pages": found.get("pages", 1), "match_all": found.get("match_all", True),
            "items": [grid_item(it) for it in found.get("items", [])]}


def best_match(page: Any, item_id: Any) -> int | None:
    """The index of the best matched shot of item ``item_id`` in the session's grid page, or None."""
    items = page.get("items") if isinstance(page, dict) else None
    for it in items if isinstance(items, list) else []:
        if isinstance(it, dict) and it.get("id") == item_id:
            matched = it.get("matched_segments") or []
            best = matched[0].get("idx") if matched and isinstance(matched[0], dict) else None
            return best if isinstance(best, int) and not isinstance(best, bool) else None
    return None


