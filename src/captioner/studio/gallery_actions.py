"""The Gallery tab's actions on one item: open it (the modal's details, its attention player or video
player), edit its caption (history kept), download the photo with its caption in its metadata, delete it
(with Undo; the Trash view restores or empties), and export the gallery.

The item is always the session's (a ``gr.State`` of ids the server looked up), never an id, path or file
name from the browser.
"""
from __future__ import annotations

import html
import logging
import uuid
from datetime import datetime
from pathlib import Path

import gradio as gr

from captioner.inputs.images import open_image
from captioner.storage import GalleryError
from captioner.studio import files, gradio_private, library_render, player, render
from captioner.studio.gallery_search import best_match, page_entry
from captioner.studio.photos_tab import animation_gif
from captioner.studio.values import MAX_CAPTION_CHARS, SHA256_HEX, index_in, int_value

log = logging.getLogger("captioner.studio")

EXPORT_FORMATS = ("json", "csv")


class GalleryActions:
    """What the user does with one item (a part of `GalleryTab`: it gives ``studio``, the `Studio`,
    ``downloads``, the folder of downloads, and `GallerySearch`'s ``search`` and ``_image_file``)."""

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
        data = gradio_private.event_data(evt)
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
        folder = self.downloads / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / files.download_name(item.get("original_name"), source.suffix.lower())
        written = [files.write_download(target, data)]
        if sidecar is not None:
            written.append(files.write_download(target.with_name(target.name + ".xmp"), sidecar))
        files.prune(self.downloads)
        if sidecar is not None:
            return (gr.File(value=written, visible=True),
                    f"⬇️ {html.escape(target.suffix.upper()[1:])} files cannot hold a caption: it is in "
                    f"{html.escape(Path(written[1]).name)} beside the photo (photo managers read it).")
        return gr.File(value=written, visible=True), f"⬇️ {html.escape(target.name)} has the caption in its metadata."

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

