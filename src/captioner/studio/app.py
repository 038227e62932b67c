"""Captioner studio: a local web app (Gradio) to caption photos, compare beam candidates with their
attention, and keep the chosen captions in a searchable gallery.

Start it with ``captioner studio`` or, without the CLI::

    python -m captioner.studio.app --model DIR --gallery DIR --port 7860 [--listen]

It listens on 127.0.0.1 only unless ``--listen`` (then 0.0.0.0); it sends nothing anywhere:
Gradio analytics are off and no share link is made. All the work is done by `captioner.core`
(captioning, attention pictures) and `captioner.storage` (the gallery); this module only wires
them to widgets.

Scripting the studio (gradio_client)
------------------------------------
The three main events are API endpoints. ``/save`` works on the last ``/caption`` result of the
same client session, so use one ``Client`` for both::

    from gradio_client import Client, handle_file

    client = Client("http://127.0.0.1:7860/", verbose=False, analytics_enabled=False)

    # caption one or more photos: (files, beam size 1-10, maximum caption length in words)
    result = client.predict([handle_file("dog.jpg"), handle_file("cat.png")], 3, 20, api_name="/caption")
    # -> {"model": "captioner", "beam_size": 3, "max_length": 20, "captioned": 2, "failed": 0,
    #     "message": "...",
    #     "photos": [{"index": 0, "name": "dog.jpg", "width": 500, "height": 375, "error": None,
    #                 "candidates": [{"index": 0, "caption": "a dog runs on the grass",
    #                                 "tokens": [...], "score": -6.1, "normalized_score": -0.87}, ...]},
    #                ...]}
    # a photo that cannot be read has "error": "<readable reason>" and no candidates; the others
    # are captioned all the same.

    # save a candidate to the gallery: (photo index, candidate index, caption text)
    saved = client.predict(0, 0, "", api_name="/save")                  # candidate 0 as it is
    saved = client.predict(0, 1, "a brown dog on a lawn", api_name="/save")  # edited text
    # -> {"id": 12, "name": "dog.jpg", "caption": "...", "message": "..."}
    #    or {"id": None, "error": "<readable reason>"}

    # search the gallery's captions: (query, page); an empty query lists everything, newest first
    found = client.predict("dog", 1, api_name="/search")
    # -> {"query": "dog", "total": 1, "page": 1, "pages": 1, "per_page": 24, "match_all": True,
    #     "items": [{"id": 12, "caption": "...", "original_name": "dog.jpg", "width": 500,
    #                "height": 375, "saved_at": "...", "model_name": "...", "beam_size": 3,
    #                "candidates": [...], "image_path": "..."}]}
"""
from __future__ import annotations

import argparse
import functools
import html
import logging
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

# Nothing leaves the machine: set before Gradio is imported (it reads these at import/launch).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from captioner.errors import CaptionerError  # noqa: E402
from captioner.inputs.sources import InputItem  # noqa: E402
from captioner.storage import Gallery, GalleryError, default_gallery_dir  # noqa: E402
from captioner.studio import render  # noqa: E402

log = logging.getLogger("captioner.studio")

MAX_BEAM = 10
PER_PAGE = 24
MAX_FILE_SIZE = "200mb"
THUMB_SIZE = 320
#: How long a browser tab's (or a script's) last caption result is kept for saving.
SESSION_TTL_S = 6 * 3600


# ---------------------------------------------------------------------------- small helpers
def _user_errors(fn):
    """Turn any unexpected exception into a short readable message (the traceback goes to the log)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (CaptionerError, GalleryError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence before the browser
            log.exception("studio: %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). "
                           "Details are in the studio's console.", print_exception=False) from None
    return wrapper


def _int(value: Any, lo: int, hi: int, default: int) -> int:
    try:
        return max(lo, min(hi, int(round(float(value)))))
    except (TypeError, ValueError):
        return default


def _paths(files: Any) -> list[str]:
    """File component value(s) -> list of paths."""
    if not files:
        return []
    if not isinstance(files, (list, tuple)):
        files = [files]
    out = []
    for f in files:
        path = f if isinstance(f, (str, os.PathLike)) else getattr(f, "path", None) or getattr(f, "name", None)
        if path:
            out.append(str(path))
    return out


def _readable(message: str, path: str, name: str) -> str:
    """Engine messages name the upload's temporary path; show the user's file name instead."""
    return message.replace(path, name) if message else message


class Studio:
    """The studio's behaviour, one method per event; `build` lays out the widgets."""

    def __init__(self, captioner, gallery: Gallery):
        self.captioner = captioner
        self.gallery = gallery
        self.model_name = captioner.name
        decoding = captioner.decoding  # the model's default decoding
        self.default_len = decoding.max_len
        self.max_len_limit = max(50, self.default_len)
        self.default_beam = min(decoding.beam_size, MAX_BEAM)
        self.thumbs = Path(tempfile.gettempdir()) / "captioner-studio" / "thumbs"
        self.exports = Path(tempfile.gettempdir()) / "captioner-studio" / "exports"

    # ------------------------------------------------------------------ captioning
    def _caption_all(self, paths: list[str], names: list[str], beam: int, max_len: int, progress) -> list:
        if len(paths) == 1:
            progress(0.1, desc=f"Captioning {names[0]}")
            return [self.captioner.caption(paths[0], beam_size=beam, max_len=max_len, name=names[0])]
        results = []
        try:
            for i, res in enumerate(self.captioner.caption_many(
                    [InputItem(n, p) for n, p in zip(names, paths)], beam_size=beam, max_len=max_len, batch_size=4)):
                results.append(res)
                progress((i + 1, len(paths)), desc=f"Captioned {names[i]}", unit="photos")
            return results
        except Exception:  # noqa: BLE001 - an unexpected failure in a batch: go one by one
            log.exception("studio: batch captioning failed; retrying photo by photo")
        for i in range(len(results), len(paths)):
            try:
                results.append(self.captioner.caption(paths[i], beam_size=beam, max_len=max_len, name=names[i]))
            except Exception as exc:  # noqa: BLE001
                log.exception("studio: captioning %s failed", names[i])
                from captioner.pipeline import CaptionResult
                results.append(CaptionResult(paths[i], error=f"{names[i]}: could not be captioned "
                                             f"({type(exc).__name__}: {exc})", beam_size=beam))
            progress((i + 1, len(paths)), desc=f"Captioned {names[i]}", unit="photos")
        return results

    def caption(self, files, beam_size, max_length, progress=gr.Progress()):
        """API ``/caption``: caption the photos; returns (JSON result, session state)."""
        paths = _paths(files)
        beam = _int(beam_size, 1, MAX_BEAM, self.default_beam)
        max_len = _int(max_length, 1, self.max_len_limit, self.default_len)
        if not paths:
            message = "Add one or more photos first (drop them on the box, or click it to choose files)."
            gr.Warning(message)
            return ({"model": self.model_name, "beam_size": beam, "max_length": max_len, "captioned": 0,
                     "failed": 0, "photos": [], "message": message}, {"photos": [], "message": message})
        names = [os.path.basename(p) or f"photo {i + 1}" for i, p in enumerate(paths)]
        start = time.perf_counter()
        results = self._caption_all(paths, names, beam, max_len, progress)
        seconds = time.perf_counter() - start

        photos, entries, failures = [], [], []
        for i, (path, name, res) in enumerate(zip(paths, names, results)):
            error = _readable(res.error, path, name) if res.error else None
            if error is None and not res.candidates:
                error = f"{name}: the model produced no caption"
            width, height = (res.width, res.height) if error is None else (None, None)
            if error:
                failures.append(error)
            photos.append({"index": i, "name": name, "width": width, "height": height, "error": error,
                           "candidates": [] if error else
                           [{"index": j, **c.to_dict()} for j, c in enumerate(res.candidates)]})
            entries.append({"name": name, "path": path, "width": width, "height": height, "error": error,
                            "candidates": [] if error else list(res.candidates), "html": None})
        ok = len(paths) - len(failures)
        message = (f"Captioned {ok} of {len(paths)} photo{'s' if len(paths) != 1 else ''} "
                   f"in {seconds:.1f} s (beam {beam}, up to {max_len} words).")
        if failures:
            gr.Warning(f"{len(failures)} of {len(paths)} photos could not be captioned: " + "; ".join(failures),
                       duration=20)
        state = {"photos": entries, "beam_size": beam, "message": message}
        return ({"model": self.model_name, "beam_size": beam, "max_length": max_len, "captioned": ok,
                 "failed": len(failures), "message": message, "photos": photos}, state)

    def _photo_view(self, state: dict, index: int):
        """(cards HTML, candidate radio, caption text, candidate index) for one photo."""
        entry = state["photos"][index]
        if entry["html"] is None:
            try:
                img = render.load_photo(entry["path"])
            except Exception as exc:  # noqa: BLE001 - still show the captions
                log.warning("studio: could not draw %s: %s", entry["name"], exc)
                img = None
            head = render.photo_header(entry["name"], entry["width"], entry["height"], state.get("beam_size"),
                                       self.model_name)
            entry["html"] = head + render.candidate_cards(img, entry["candidates"])
            for other in state["photos"]:  # keep only the photo on screen drawn: pictures are big
                if other is not entry:
                    other["html"] = None
        cands = entry["candidates"]
        choices = [(f"#{j + 1}  {c.caption}", j) for j, c in enumerate(cands)]
        return (entry["html"], gr.Radio(choices=choices, value=0, visible=True, interactive=True),
                cands[0].caption, 0)

    def show_results(self, state: dict | None):
        """After /caption: status, photo picker, cards of the first good photo, save controls."""
        state = state or {"photos": []}
        photos = state.get("photos", [])
        ok = [i for i, p in enumerate(photos) if not p["error"]]
        status = [state.get("message", "")]
        status += [f"- ⚠️ {html.escape(p['error'])}" for p in photos if p["error"]]
        status_md = "\n".join(s for s in status if s)
        if not ok:
            body = render.empty("No captions yet." if not photos else "None of these photos could be captioned.")
            return (status_md, gr.Dropdown(choices=[], value=None, visible=False), body,
                    gr.Radio(choices=[], value=None, visible=False), "", 0, 0, gr.Group(visible=False), "")
        picker = gr.Dropdown(choices=[(f"{i + 1}. {photos[i]['name']}", i) for i in ok], value=ok[0],
                             visible=len(ok) > 1, interactive=True)
        cards, radio, text, cand = self._photo_view(state, ok[0])
        return status_md, picker, cards, radio, text, ok[0], cand, gr.Group(visible=True), ""

    def pick_photo(self, state: dict | None, index):
        state = state or {"photos": []}
        idx = _int(index, 0, max(0, len(state["photos"]) - 1), 0)
        if not state["photos"] or state["photos"][idx]["error"]:
            return render.empty("Nothing to show."), gr.Radio(choices=[], value=None), "", idx, 0, ""
        cards, radio, text, cand = self._photo_view(state, idx)
        return cards, radio, text, idx, cand, ""

    def pick_candidate(self, state: dict | None, photo, cand):
        try:
            entry = state["photos"][int(photo)]
            j = int(cand)
            return entry["candidates"][j].caption, j
        except (TypeError, ValueError, IndexError, KeyError):
            return gr.skip(), gr.skip()

    # ------------------------------------------------------------------ saving
    def save(self, photo_index, candidate_index, caption, state: dict | None):
        """API ``/save``: store one photo of the last /caption result with the chosen caption."""
        photos = (state or {}).get("photos") or []
        if not photos:
            return self._save_error("Nothing to save yet: caption a photo first.")
        idx = _int(photo_index, 0, 10**9, 0)
        if idx >= len(photos):
            return self._save_error(f"There is no photo {idx} in the last result (0 to {len(photos) - 1}).")
        entry = photos[idx]
        if entry["error"]:
            return self._save_error(f"{entry['name']} has no caption to save: {entry['error']}")
        cands = entry["candidates"]
        j = _int(candidate_index, 0, 10**9, 0)
        if j >= len(cands):
            return self._save_error(f"There is no candidate {j} for {entry['name']} (0 to {len(cands) - 1}).")
        text = " ".join(str(caption or "").split()) or cands[j].caption
        try:
            item_id = self.gallery.save(
                entry["path"], entry["name"], text,
                candidates=[c.to_dict(with_attention=True) for c in cands],
                beam_size=state.get("beam_size"), model_name=self.model_name,
                width=entry["width"], height=entry["height"])
        except GalleryError as exc:
            return self._save_error(str(exc))
        edited = "" if text == cands[j].caption else " (edited)"
        message = f"Saved “{text}”{edited} for {entry['name']} as gallery item #{item_id}."
        return {"id": item_id, "name": entry["name"], "caption": text, "candidate": j, "message": message}

    @staticmethod
    def _save_error(message: str) -> dict:
        gr.Warning(message)
        return {"id": None, "error": message}

    @staticmethod
    def save_message(result: dict | None) -> str:
        if not result:
            return ""
        if result.get("id") is None:
            return f"⚠️ {html.escape(result.get('error') or 'Not saved.')}"
        return f"✅ {html.escape(result['message'])}"

    # ------------------------------------------------------------------ gallery
    def search(self, query, page):
        """API ``/search``: one page of gallery items matching ``query`` (all items if empty)."""
        text = "" if query is None else str(query)
        page_no = _int(page, 1, 10**9, 1)
        try:
            result = self.gallery.search(text, page_no, PER_PAGE)
            if result.page > result.pages and result.total:  # e.g. after deleting the last item of a page
                result = self.gallery.search(text, result.pages, PER_PAGE)
        except GalleryError as exc:
            gr.Warning(str(exc))
            return {"query": text, "total": 0, "page": 1, "pages": 1, "per_page": PER_PAGE, "match_all": True,
                    "items": [], "error": str(exc)}
        return {"query": text, "total": result.total, "page": result.page, "pages": result.pages,
                "per_page": result.per_page, "match_all": result.match_all, "items": result.items}

    def _thumb(self, item: dict) -> str | None:
        """A small JPEG of the item's image, cached by content hash (the originals can be huge)."""
        target = self.thumbs / f"{item['image_hash']}.jpg"
        if target.exists():
            return str(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            img = render.load_photo(item["image_path"], THUMB_SIZE // 2)
            img.thumbnail((THUMB_SIZE, THUMB_SIZE))
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            img.save(tmp, format="JPEG", quality=85)
            os.replace(tmp, target)
            return str(target)
        except Exception as exc:  # noqa: BLE001 - a missing image file: leave the item out of the grid
            log.warning("studio: no thumbnail for item %s: %s", item.get("id"), exc)
            return None

    def show_grid(self, result: dict | None):
        """After /search: the grid, the page line, the page number and the ids shown."""
        result = result or {"items": [], "total": 0, "page": 1, "pages": 1, "query": ""}
        shown, ids = [], []
        for item in result.get("items", []):
            thumb = self._thumb(item)
            if thumb:
                shown.append((thumb, item["caption"]))
                ids.append(item["id"])
        total, query = result.get("total", 0), result.get("query", "")
        if total == 0:
            line = (f"No saved caption matches “{html.escape(query)}”." if query.strip()
                    else "The gallery is empty: caption a photo and save it.")
        else:
            what = f"matching “{html.escape(query)}”" if query.strip() else "saved, newest first"
            line = f"**{total}** item{'s' if total != 1 else ''} {what} · page {result['page']} of {result['pages']}"
            if not result.get("match_all", True):
                line += " · no item has every word; showing items with any of them"
        return (gr.Gallery(value=shown, selected_index=None), line, result.get("page", 1), ids,
                gr.Button(interactive=result.get("page", 1) > 1),
                gr.Button(interactive=result.get("page", 1) < result.get("pages", 1)))

    def show_item(self, ids: list | None, evt: gr.SelectData):
        try:
            item_id = (ids or [])[evt.index]
        except (IndexError, TypeError):
            return render.empty("Pick an item in the grid."), None, gr.Row(visible=False)
        item = self.gallery.get(item_id)
        if item is None:
            return render.empty("This item is no longer in the gallery."), None, gr.Row(visible=False)
        return render.item_details(item), item_id, gr.Row(visible=True)

    def delete(self, item_id):
        if item_id is None:
            return "", None, gr.Row(visible=False), render.empty("Pick an item in the grid to see its details.")
        removed = self.gallery.delete(item_id)
        message = f"🗑️ Deleted item #{item_id}." if removed else f"Item #{item_id} was already gone."
        return message, None, gr.Row(visible=False), render.empty("Pick an item in the grid to see its details.")

    def export(self, fmt):
        fmt = (fmt or "json").lower()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.gallery.export(self.exports / f"captioner-gallery-{stamp}.{fmt}", fmt)
        return gr.File(value=str(path), visible=True), f"Exported {self.gallery.count()} items as {fmt.upper()}."

    # ------------------------------------------------------------------ layout
    def build(self) -> gr.Blocks:
        # Uploaded files older than a day are removed from Gradio's cache (hourly); saved photos
        # live in the gallery's own folder.
        with gr.Blocks(title="Captioner Studio", analytics_enabled=False, fill_width=False,
                       delete_cache=(3600, 86400)) as demo:
            gr.HTML(f"<style>{render.CSS}</style><div class='studio-title'><h1>Captioner Studio</h1>"
                    f"<p>Model <b>{html.escape(self.model_name)}</b> · gallery "
                    f"<code>{html.escape(str(self.gallery.folder))}</code> · everything stays on this computer</p></div>",
                    elem_id="studio-header", js_on_load=None)
            session = gr.State({"photos": []}, time_to_live=SESSION_TTL_S)
            grid_ids = gr.State([])
            with gr.Tabs(elem_id="studio-tabs"):
                with gr.Tab("Caption", id="caption", elem_id="tab-caption"):
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=300):
                            files = gr.File(label="Photos", file_count="multiple", height=170,
                                            elem_id="photo-files")
                            paste = gr.Image(label="…or paste / webcam",
                                             sources=["clipboard", "webcam", "upload"], type="filepath",
                                             format="png", height=170, elem_id="photo-paste")
                            beam = gr.Slider(1, MAX_BEAM, value=self.default_beam, step=1, label="Beam size",
                                             info="How many candidate captions to search for and show",
                                             elem_id="beam-size")
                            max_len = gr.Slider(1, self.max_len_limit, value=self.default_len, step=1,
                                                label="Maximum caption length (words)", elem_id="max-length")
                            go = gr.Button("Caption", variant="primary", elem_id="caption-button")
                            with gr.Accordion("Result as JSON", open=False):
                                result_json = gr.JSON(label="Result", elem_id="caption-json")
                        with gr.Column(scale=3, min_width=480):
                            status = gr.Markdown("Drop photos on the left and press **Caption**.",
                                                 elem_id="caption-status")
                            photo_pick = gr.Dropdown(label="Photo", choices=[], visible=False,
                                                     elem_id="photo-pick")
                            cards = gr.HTML(render.empty("The beam candidates will appear here, best first."),
                                            elem_id="candidates", js_on_load=None, min_height=120)
                            with gr.Group(visible=False, elem_id="save-box") as save_box:
                                pick = gr.Radio(label="Caption to save", choices=[], elem_id="candidate-pick")
                                text = gr.Textbox(value="", label="Caption text (edit it if you like)", lines=1,
                                                  elem_id="caption-text")
                                save_btn = gr.Button("Save to gallery", variant="primary", elem_id="save-button")
                            save_msg = gr.Markdown("", elem_id="save-message")
                            photo_idx = gr.Number(value=0, precision=0, label="photo index", visible=False)
                            cand_idx = gr.Number(value=0, precision=0, label="candidate index", visible=False)
                            save_json = gr.JSON(label="Saved", visible=False)

                with gr.Tab("Gallery", id="gallery", elem_id="tab-gallery") as gallery_tab:
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
                    selected = gr.State(None)
                    details = gr.HTML(render.empty("Pick an item in the grid to see its details."),
                                      elem_id="item-details", js_on_load=None)
                    with gr.Row(visible=False) as item_actions:
                        delete_btn = gr.Button("Delete this item", variant="stop", size="sm", scale=0,
                                               min_width=160, elem_id="delete-button")
                    with gr.Accordion("Export the gallery", open=False):
                        with gr.Row(equal_height=True):
                            fmt = gr.Radio(["json", "csv"], value="json", label="Format", scale=1)
                            export_btn = gr.Button("Export", scale=1, elem_id="export-button")
                        export_file = gr.File(label="Download", visible=False, interactive=False,
                                              elem_id="export-file")

            # ---- caption tab wiring
            # .change, not .input: it also fires after uploads, and queues the latest value if a
            # previous one (e.g. the clear that switching sources does) is still being handled.
            paste.change(_user_errors(self.add_pasted), [paste, files], [files, paste],
                         api_visibility="private", show_progress="hidden", trigger_mode="always_last")
            go.click(_user_errors(self.caption), [files, beam, max_len], [result_json, session],
                     api_name="caption", show_progress_on=[cards], concurrency_id="engine",
                     concurrency_limit=1).then(
                _user_errors(self.show_results), [session],
                [status, photo_pick, cards, pick, text, photo_idx, cand_idx, save_box, save_msg],
                api_visibility="private", show_progress_on=[cards])
            photo_pick.input(_user_errors(self.pick_photo), [session, photo_pick],
                             [cards, pick, text, photo_idx, cand_idx, save_msg],
                             api_visibility="private", show_progress_on=[cards])
            pick.input(self.pick_candidate, [session, photo_idx, pick], [text, cand_idx],
                       api_visibility="private", queue=False, show_progress="hidden")
            save_btn.click(_user_errors(self.save), [photo_idx, cand_idx, text, session], [save_json],
                           api_name="save", show_progress="minimal").then(
                self.save_message, [save_json], [save_msg], api_visibility="private", queue=False,
                show_progress="hidden")

            # ---- gallery tab wiring
            search_json = gr.JSON(visible=False, label="Search result")
            grid_outputs = [grid, page_line, page_no, grid_ids, prev_btn, next_btn]

            def then_show(event):
                return event.then(_user_errors(self.show_grid), [search_json], grid_outputs,
                                  api_visibility="private", show_progress="hidden")

            def then_search(event):
                return then_show(event.then(_user_errors(self.search), [query, page_no], [search_json],
                                            api_visibility="private", show_progress="hidden"))

            # The search box starts again at page 1 (the js step; API callers pass the page).
            then_show(gr.on([search_btn.click, query.submit], _user_errors(self.search), [query, page_no],
                            [search_json], api_name="search", js="(q, p) => [q, 1]"))
            then_show(gallery_tab.select(_user_errors(self.search), [query, page_no], [search_json],
                                         api_visibility="private", show_progress="hidden"))
            then_search(prev_btn.click(None, [page_no], [page_no], js="(p) => Math.max(1, (p || 1) - 1)"))
            then_search(next_btn.click(None, [page_no], [page_no], js="(p) => (p || 1) + 1"))
            grid.select(_user_errors(self.show_item), [grid_ids], [details, selected, item_actions],
                        api_visibility="private", show_progress_on=[details])
            deleted = delete_btn.click(_user_errors(self.delete), [selected], [gallery_msg, selected, item_actions,
                                                                                details],
                                       api_visibility="private",
                                       js="(id) => (confirm('Delete this item from the gallery?') ? id : null)")
            then_search(deleted)
            export_btn.click(_user_errors(self.export), [fmt], [export_file, gallery_msg], api_visibility="private")
        return demo

    def add_pasted(self, pasted, files):
        """A clipboard / webcam picture joins the list of photos (and the paste box is cleared)."""
        if not pasted:  # cleared (also by us, below): nothing to do
            return gr.skip(), gr.skip()
        return _paths(files) + [str(pasted)], None


def build_app(captioner, gallery: Gallery) -> gr.Blocks:
    """The studio's Blocks for a loaded `Captioner` and an open `Gallery` (see the module docstring)."""
    return Studio(captioner, gallery).build()


def launch(model_dir: str | os.PathLike | None = None, gallery_dir: str | os.PathLike | None = None,
           host: str = "127.0.0.1", port: int = 7860, listen: bool = False, *, inbrowser: bool = False,
           quiet: bool = False):
    """Load the model and the gallery, then serve the studio (blocks until stopped).

    ``listen=True`` serves on every network interface (0.0.0.0) instead of ``host``.
    Raises `CaptionerError` / `GalleryError` with a readable message if either cannot be opened.
    """
    from captioner.pipeline import Captioner

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    captioner = Captioner.load(model_dir)
    gallery = Gallery(gallery_dir if gallery_dir is not None else default_gallery_dir())
    demo = build_app(captioner, gallery)
    demo.queue(default_concurrency_limit=2)
    return demo.launch(server_name="0.0.0.0" if listen else host, server_port=int(port), share=False,
                       inbrowser=inbrowser, quiet=quiet, show_error=False, ssr_mode=False, mcp_server=False,
                       enable_monitoring=False, max_file_size=MAX_FILE_SIZE, footer_links=["api"],
                       pwa=False, css=render.CSS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m captioner.studio.app",
                                     description="Run the captioner studio (a local web app).")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--gallery", default=None, help=f"gallery folder (default: {default_gallery_dir()})")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--listen", action="store_true", help="serve on all network interfaces (0.0.0.0)")
    parser.add_argument("--open", action="store_true", help="open a browser tab")
    args = parser.parse_args(argv)
    try:
        launch(args.model, args.gallery, args.host, args.port, args.listen, inbrowser=args.open)
    except (CaptionerError, GalleryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # e.g. the port is taken
        print(f"error: could not start the studio: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
