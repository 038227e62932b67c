"""The studio's Gallery tab: browse, sort, filter and search the saved captions (by words, with the
matching words highlighted, or by meaning), open an item in a modal (a photo with its saved candidates'
attention in the Caption tab's attention player, or a video that plays from its matched shot), edit its caption (history kept), copy it, download the photo with its caption in its
metadata, show items like it, delete it (with Undo; a Trash view restores or empties), export the
gallery, and import a folder of photos.

This module lays the tab out and wires its events; the handlers live beside it: `gallery_search` (the
view, the searches and the grid), `gallery_actions` (one item, delete and the trash, export) and
`gallery_import` (a folder of photos).

Every item shown is one the server looked up; the session keeps the page, the ids shown, the item on
display and the last deleted item (``gr.State``); the browser's event values are indexes into those
lists, choices from fixed menus, or text that is checked — never ids of its own, paths or file names.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from captioner.studio import library_render, player, render
from captioner.studio.assets import asset
from captioner.studio.gallery_actions import EXPORT_FORMATS, GalleryActions
from captioner.studio.gallery_import import GalleryImport
from captioner.studio.gallery_search import (
    ALL_MODELS,
    DEFAULT_SORT,
    KINDS,
    SORTS,
    VIEWS,
    GallerySearch,
    default_view,
    trash_controls,
)
from captioner.studio.values import MAX_CAPTION_CHARS, SESSION_TTL_S, user_errors
from captioner.studio.video_tab import GALLERY_SEEK_JS, ITEM_SHOTS_JS

#: The item modal (``js_on_load`` of the item details; installed once per page): the details are a fixed
#: overlay (`library_render.CSS`), shown while the page's body has ``.item-modal-open``.  ``open`` moves the
#: focus into it (its Close button) and remembers what had it; ``close`` (the Close button, Escape, a click
#: on the dimmed page around it) pauses the item's video and attention player and gives the focus back.
#: Tab and Shift+Tab stay inside while it is open.
ITEM_MODAL_JS = asset("gallery_modal.js")
#: After a delete or its Undo (``gallery_msg`` given): the message row, with its Undo button, becomes a toast at
#: the bottom of the window for a while (the row itself is far below the grid, out of view).
TOAST_JS = asset("gallery_toast.js")
#: After an item is opened (its details are in): show the modal.
OPEN_ITEM_JS = "() => { if (window.captionerModal) { window.captionerModal.open(); } return []; }"
#: Close the modal (the Close button; after a delete, a restore, "more like this", another view).
CLOSE_ITEM_JS = "() => { if (window.captionerModal) { window.captionerModal.close(); } return []; }"

#: Copy the caption of the item on display (the details carry it in ``data-caption``); says so in the
#: item's message line (and in the button's ``data-copied``).
COPY_JS = asset("gallery_copy_caption.js")

#: The list of matches beside the grid: a click (or Enter) on one opens that item in the grid.
MATCHES_JS = asset("gallery_matches.js")



class GalleryTab(GallerySearch, GalleryActions, GalleryImport):
    """The Gallery tab's events (the `Studio` gives the gallery, the engine, the video player and the limits)."""

    def __init__(self, studio):
        self.studio = studio
        self.downloads = Path(tempfile.gettempdir()) / "captioner-studio" / "downloads"
        self.imports = Path(tempfile.gettempdir()) / "captioner-studio" / "imports"
        self._meaning_lock = threading.Lock()  # one by-meaning search at a time (it runs the model)

    # ------------------------------------------------------------------ layout
    def build(self) -> list:
        """The tab's widgets and events (inside ``gr.Tabs``); returns the components with heavy values."""
        w = SimpleNamespace()
        with gr.Tab("Gallery", id="gallery", elem_id="tab-gallery") as w.tab:
            gr.HTML(f"<style>{library_render.CSS}</style>", elem_id="gallery-style", js_on_load=None,
                    padding=False)
            w.grid_page = gr.State(None, time_to_live=SESSION_TTL_S)
            w.grid_ids = gr.State([], time_to_live=SESSION_TTL_S)
            w.view = gr.State(default_view(), time_to_live=SESSION_TTL_S)
            w.last_deleted = gr.State(None, time_to_live=SESSION_TTL_S)
            w.search_json = gr.JSON(visible=False, label="Search result")
            self._search_controls(w)
            self._results(w)
            w.selected = gr.State(None, time_to_live=SESSION_TTL_S)
            self._item_modal(w)
            # the one-time code of a confirmation box (`Studio.confirm_code`): sent back only on "yes"
            w.confirm_code = gr.Textbox(value="", visible=False, label="confirmation")
            self._export_and_import(w)
        self._wire_search(w)
        self._wire_item(w)
        self._wire_delete(w)
        self._wire_export_and_import(w)
        return [w.details, w.item_view]

    @staticmethod
    def _search_controls(w: SimpleNamespace) -> None:
        """The search box, by meaning, the candidates too, the help, the sort and filters."""
        with gr.Row(equal_height=True):
            w.query = gr.Textbox(value="", label="Search captions", scale=4, elem_id="search-box",
                                 placeholder='e.g. dog grass · dog OR cat · dog NOT lake · "red ball"',
                                 submit_btn=False)
            w.search_btn = gr.Button("Search", variant="primary", scale=0, min_width=120, elem_id="search-button")
        w.meaning = gr.Checkbox(value=False, label="By meaning: describe the photo in your own words",
                                elem_id="meaning-toggle", container=False)
        w.with_candidates = gr.Checkbox(value=False, container=False, elem_id="search-candidates",
                                        label="Also search the candidates I did not pick")
        gr.Markdown(library_render.SEARCH_HELP, elem_id="search-help")
        with gr.Accordion("Sort and filter", open=False, elem_id="gallery-filters"):
            with gr.Row():
                w.sort = gr.Dropdown(list(SORTS), value=DEFAULT_SORT, label="Sort", elem_id="gallery-sort",
                                     min_width=160)
                w.model = gr.Dropdown([ALL_MODELS], value=ALL_MODELS, label="Model", elem_id="gallery-model",
                                      min_width=160)
                w.kind = gr.Radio(list(KINDS), value="Photos and videos", label="Kind", elem_id="gallery-kind",
                                  min_width=200)
            with gr.Row():
                w.saved_from = gr.Textbox(label="Saved from", placeholder="YYYY-MM-DD", elem_id="saved-from",
                                          min_width=140)
                w.saved_to = gr.Textbox(label="Saved to", placeholder="YYYY-MM-DD", elem_id="saved-to",
                                        min_width=140)
                w.which = gr.Radio(list(VIEWS), value=VIEWS[0], label="Show", elem_id="gallery-view", min_width=200)

    @staticmethod
    def _results(w: SimpleNamespace) -> None:
        """The paging row, the grid with its list of matches, the message row (Undo, Empty trash)."""
        with gr.Row(equal_height=True):
            w.prev_btn = gr.Button("← Previous", size="sm", scale=0, min_width=90, interactive=False,
                                   elem_id="page-prev")
            w.page_line_md = gr.Markdown("", elem_id="page-line")
            w.next_btn = gr.Button("Next →", size="sm", scale=0, min_width=90, interactive=False,
                                   elem_id="page-next")
        w.page_no = gr.Number(value=1, precision=0, label="page", visible=False)
        with gr.Row(elem_id="gallery-results"):
            w.grid = gr.Gallery(label="Saved captions", show_label=False, columns=6, height="auto",
                                fit_columns=False, allow_preview=False, object_fit="cover",
                                elem_id="gallery-grid", interactive=False, buttons=[], scale=3, min_width=300)
            w.matches = gr.HTML("", elem_id="search-matches", js_on_load=MATCHES_JS, visible=False,
                                scale=2, min_width=260, max_height=720)
        # after a delete (or its undo) this row is a toast at the bottom of the window (TOAST_JS)
        with gr.Row(equal_height=True, elem_id="gallery-toast"):
            w.gallery_msg = gr.Markdown("", elem_id="gallery-message")
            w.undo_btn = gr.Button("Undo", size="sm", scale=0, min_width=90, visible=False, elem_id="gallery-undo")
            w.empty_btn = gr.Button("Empty trash", size="sm", variant="stop", scale=0, min_width=130,
                                    visible=False, elem_id="empty-trash")

    def _item_modal(self, w: SimpleNamespace) -> None:
        """The item modal: shown over the page while the body has .item-modal-open (ITEM_MODAL_JS)."""
        writable = not self.studio.read_only
        with gr.Column(elem_id="item-modal"), gr.Column(elem_id="item-panel"):
            # the head stays at the top while the window scrolls: the title, Close, the saved caption
            # (first: what the user chose, before the model's candidates) and the item's actions
            with gr.Column(elem_id="item-modal-head"):
                with gr.Row(elem_id="item-modal-bar", equal_height=True):
                    w.item_title = gr.HTML("Item", elem_id="item-modal-title", padding=False, min_width=0)
                    w.close_btn = gr.Button("✕ Close", size="sm", scale=0, min_width=100, elem_id="item-close")
                w.restore_btn = gr.Button("Restore this item", visible=False, size="sm", elem_id="restore-button")
                with gr.Column(visible=False, elem_id="item-actions") as w.item_actions:
                    w.caption_edit = gr.Textbox(label="Saved caption (edit it, then Save caption)",
                                                max_length=MAX_CAPTION_CHARS, elem_id="caption-edit",
                                                interactive=writable, lines=1)
                    with gr.Row():
                        w.save_edit = gr.Button("Save caption", scale=0, min_width=120, size="sm",
                                                variant="primary", elem_id="save-caption")
                        w.copy_btn = gr.Button("Copy caption", size="sm", scale=0, min_width=120,
                                               elem_id="copy-caption")
                        w.download_btn = gr.Button("Download photo with caption", size="sm", scale=0,
                                                   min_width=210, elem_id="download-photo")
                        w.similar_btn = gr.Button("More like this", size="sm", scale=0, min_width=120,
                                                  elem_id="more-like-this")
                        w.delete_btn = gr.Button("Delete this item", variant="stop", size="sm", scale=0,
                                                 min_width=140, elem_id="delete-button")
                    w.tools_msg = gr.Markdown("", elem_id="item-message")
                    w.download_file = gr.File(label="Photo with its caption", visible=False, interactive=False,
                                              file_count="multiple", elem_id="download-file")
            w.item_player = gr.Video(label="Video", interactive=False, visible="hidden", elem_id="item-player")
            w.item_seek = gr.JSON(value=None, visible=False, label="Start at")
            w.item_view = gr.HTML(library_render.no_item_view(), html_template="<div class='pv-mount'></div>",
                                  js_on_load=player.player_js(), apply_default_css=False, elem_id="item-view",
                                  min_height=120, visible="hidden")
            w.anim_file = gr.File(label="Attention animation (GIF)", visible="hidden", interactive=False,
                                  elem_id="item-animation-file")
            w.details = gr.HTML(render.empty("Pick an item in the grid to see its details."),
                                elem_id="item-details", js_on_load=ITEM_SHOTS_JS + ITEM_MODAL_JS)

    def _export_and_import(self, w: SimpleNamespace) -> None:
        with gr.Accordion("Export the gallery", open=False):
            with gr.Row(equal_height=True):
                w.fmt = gr.Radio(list(EXPORT_FORMATS), value="json", label="Format", scale=1,
                                 info="CSV: one row per item, no attention maps; JSON: everything")
                w.export_btn = gr.Button("Export", scale=1, elem_id="export-button")
            w.export_file = gr.File(label="Download", visible=False, interactive=False, elem_id="export-file")
        with gr.Accordion("Import a folder of photos", open=False, visible=not self.studio.read_only,
                          elem_id="import-box"):
            gr.Markdown("Each photo is captioned and saved; photos already in the gallery are skipped "
                        "and files that cannot be read are listed. (The studio only sees the files you "
                        "upload here.)")
            w.import_files = gr.File(file_count="directory", label="Folder", elem_id="import-folder", height=140)
            w.import_btn = gr.Button("Import", variant="primary", elem_id="import-button")
            w.import_msg = gr.Markdown("", elem_id="import-message")

    # ------------------------------------------------------------------ events
    def _forget(self, event):
        """Once the pictures are in the browser, the server drops its copy."""
        return event.then(self.studio.forget_rendered, None, None, api_visibility="private", queue=False,
                          show_progress="hidden")

    def _then_show(self, w: SimpleNamespace, event):
        """...then the grid is drawn from the session's page (and Empty trash shown in the Trash view)."""
        grid_outputs = [w.grid, w.page_line_md, w.page_no, w.grid_ids, w.prev_btn, w.next_btn, w.matches]
        shown = event.then(user_errors(self.show_grid), [w.grid_page], grid_outputs,
                           api_visibility="private", show_progress="hidden")
        shown.then(trash_controls, [w.view], [w.empty_btn], api_visibility="private", queue=False,
                   show_progress="hidden")
        return shown

    def _then_search(self, w: SimpleNamespace, event):
        """...then the search runs again and the grid is drawn."""
        return self._then_show(w, event.then(user_errors(self.search), [w.query, w.page_no, w.view],
                                             [w.search_json, w.grid_page], api_visibility="private",
                                             show_progress_on=[w.grid]))

    @staticmethod
    def _then_close(event):
        """...and the item modal closes (what follows is on the page under it)."""
        event.success(None, None, None, js=CLOSE_ITEM_JS, queue=False, show_progress="hidden")
        return event

    def _wire_search(self, w: SimpleNamespace) -> None:
        """The search (API ``/search``), the tab opening, paging, the sort and filters."""
        # The search box starts again at page 1 (the js step; API callers pass the page).
        self._then_show(w, gr.on([w.search_btn.click, w.query.submit], user_errors(self.search),
                                 [w.query, w.page_no, w.view], [w.search_json, w.grid_page], api_name="search",
                                 js="(q, p, v) => [q, 1, v]", show_progress_on=[w.grid]))
        self._then_show(w, w.tab.select(user_errors(self.search), [w.query, w.page_no, w.view],
                                        [w.search_json, w.grid_page], api_visibility="private",
                                        show_progress="hidden"))
        w.tab.select(user_errors(self.model_choices), None, [w.model], api_visibility="private",
                     show_progress="hidden")
        self._then_search(w, w.prev_btn.click(None, [w.page_no], [w.page_no], js="(p) => Math.max(1, (p || 1) - 1)"))
        self._then_search(w, w.next_btn.click(None, [w.page_no], [w.page_no], js="(p) => (p || 1) + 1"))
        view_inputs = [w.meaning, w.sort, w.model, w.kind, w.saved_from, w.saved_to, w.which, w.with_candidates]
        self._then_search(w, gr.on([w.meaning.input, w.sort.input, w.model.input, w.kind.input, w.which.input,
                                    w.with_candidates.input, w.saved_from.submit, w.saved_to.submit,
                                    w.saved_from.blur, w.saved_to.blur],
                                   user_errors(self.set_view), view_inputs, [w.view, w.page_no],
                                   api_visibility="private", show_progress="hidden", trigger_mode="always_last"))

    def _wire_item(self, w: SimpleNamespace) -> None:
        """Another view, Close, an item opened, its GIF, its caption edited, copied, downloaded, more like it."""
        self._then_close(w.which.input(self.clear_item, None,
                                       [w.details, w.selected, w.item_actions, w.restore_btn, w.item_player,
                                        w.item_seek],
                                       api_visibility="private", queue=False, show_progress="hidden"))
        w.close_btn.click(None, None, None, js=CLOSE_ITEM_JS, queue=False, show_progress="hidden")
        opened = w.grid.select(user_errors(self.open_item), [w.grid_ids, w.grid_page],
                               [w.details, w.selected, w.item_actions, w.item_player, w.item_seek, w.item_view,
                                w.item_title],
                               api_visibility="private", show_progress_on=[w.details])
        self._forget(opened)
        opened.then(None, None, None, js=OPEN_ITEM_JS, queue=False, show_progress="hidden")
        opened.then(None, [w.item_seek], None, js=GALLERY_SEEK_JS, queue=False, show_progress="hidden")
        opened.then(user_errors(self.item_tools), [w.selected],
                    [w.caption_edit, w.download_btn, w.restore_btn, w.download_file, w.tools_msg],
                    api_visibility="private", queue=False, show_progress="hidden")
        opened.then(lambda: gr.File(value=None, visible="hidden"), None, [w.anim_file], api_visibility="private",
                    queue=False, show_progress="hidden")
        w.item_view.download(user_errors(self.animation), [w.selected], [w.anim_file], api_visibility="private",
                             show_progress="minimal")
        w.anim_file.change(None, [w.anim_file], None, js=player.gif_offer_js("item-view"), queue=False,
                           show_progress="hidden")

        self._forget(w.save_edit.click(user_errors(self.edit_caption), [w.selected, w.caption_edit],
                                       [w.tools_msg, w.details], api_visibility="private",
                                       show_progress_on=[w.details]))
        w.copy_btn.click(None, None, [w.tools_msg], js=COPY_JS, queue=False, show_progress="hidden")
        w.download_btn.click(user_errors(self.download), [w.selected], [w.download_file, w.tools_msg],
                             api_visibility="private", show_progress="minimal")
        self._then_close(self._then_show(w, w.similar_btn.click(user_errors(self.similar), [w.selected],
                                                                [w.grid_page], api_visibility="private",
                                                                show_progress_on=[w.grid])))

    def _wire_delete(self, w: SimpleNamespace) -> None:
        """Delete (confirmed), Undo, Restore, Empty trash (confirmed)."""
        # The item to delete is the session's (a State); the browser only says yes (the server's
        # one-time code for this question) or no.
        asked = w.delete_btn.click(self.studio.confirm_code("delete"), None, [w.confirm_code],
                                   api_visibility="private", queue=False, show_progress="hidden")
        deleted = asked.then(user_errors(self.delete_confirmed), [w.selected, w.confirm_code],
                             [w.gallery_msg, w.selected, w.item_actions, w.details, w.undo_btn, w.last_deleted],
                             api_visibility="private",
                             js="(id, code) => { const ok = confirm('Delete this item? (It goes to the trash: "
                                "Undo brings it back.)'); if (ok && window.captionerModal) "
                                "{ window.captionerModal.close(); } return [id, ok ? code : '']; }")
        # the list the user was in, without the item; the message and Undo as a toast where the user looks
        self._then_show(w, deleted.then(user_errors(self.after_delete),
                                        [w.query, w.page_no, w.view, w.grid_page, w.last_deleted],
                                        [w.search_json, w.grid_page], api_visibility="private",
                                        show_progress="hidden"))
        deleted.then(None, [w.gallery_msg], None, js=TOAST_JS, queue=False, show_progress="hidden")
        deleted.then(self.hide_player, [w.selected], [w.item_player, w.item_seek], api_visibility="private",
                     queue=False, show_progress="hidden")
        undone = w.undo_btn.click(user_errors(self.undo_in_list), [w.last_deleted, w.grid_page],
                                  [w.gallery_msg, w.undo_btn, w.last_deleted, w.grid_page],
                                  api_visibility="private", show_progress="hidden")
        self._then_show(w, undone.then(user_errors(self.after_undo), [w.query, w.page_no, w.view, w.grid_page],
                                       [w.search_json, w.grid_page], api_visibility="private",
                                       show_progress="hidden"))
        undone.then(None, [w.gallery_msg], None, js=TOAST_JS, queue=False, show_progress="hidden")
        restored = w.restore_btn.click(user_errors(self.restore), [w.selected], [w.gallery_msg, w.selected, w.details],
                                       api_visibility="private", show_progress="hidden")
        restored.then(lambda: gr.Button(visible=False), None, [w.restore_btn], api_visibility="private",
                      queue=False, show_progress="hidden")
        self._then_search(w, restored)
        self._then_close(restored)
        asked = w.empty_btn.click(self.studio.confirm_code("empty_trash"), None, [w.confirm_code],
                                  api_visibility="private", queue=False, show_progress="hidden")
        self._then_search(w, asked.then(user_errors(self.empty_trash_confirmed), [w.confirm_code], [w.gallery_msg],
                                        api_visibility="private",
                                        js="(code) => [confirm('Remove every item in the trash for good? "
                                           "This cannot be undone.') ? code : '']"))

    def _wire_export_and_import(self, w: SimpleNamespace) -> None:
        w.export_btn.click(user_errors(self.export), [w.fmt], [w.export_file, w.gallery_msg],
                           api_visibility="private")
        self._then_search(w, w.import_btn.click(user_errors(self.import_folder), [w.import_files], [w.import_msg],
                                                api_visibility="private", show_progress_on=[w.import_msg],
                                                concurrency_id="engine", concurrency_limit=1))
