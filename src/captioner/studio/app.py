"""Captioner studio: a local web app (Gradio) to caption photos, compare beam candidates with their
attention, and keep the chosen captions in a searchable gallery.  Its Video tab
(`captioner.studio.video_tab`) captions a video shot by shot and plays it with the captions as subtitles.

Start it with ``captioner studio`` or, without the CLI::

    python -m captioner.studio.app --model DIR --gallery DIR --port 7860 [--listen]

It listens on 127.0.0.1 only unless ``--listen`` (then 0.0.0.0); it sends nothing anywhere:
Gradio analytics are off and no share link is made. All the work is done by the pipeline
(captioning), `captioner.viz` (attention pictures) and `captioner.storage` (the gallery); this
module only wires them to widgets.

What the studio trusts
----------------------
Nothing the browser sends names a file or a folder: the photos are Gradio uploads (Gradio
refuses paths it did not receive itself), the gallery grid and the item details are drawn from
items the server looked up (kept in the session, never sent back by the browser), and event
arguments are indexes and ids checked against the session's own lists.  A gallery video opened in
the Gallery tab plays from the studio's own copy (a hard link where possible) in its temporary
folder, named by the file's sha256 (`VideoTab.served_video`); the gallery's folder is never served.
In front of Gradio,
`captioner.studio.guard.StudioGuard` answers only requests addressed to this computer (DNS
rebinding), refuses state-changing requests from other web sites (``Origin``) and caps request
sizes; ``--max-upload-mb`` (default 50) caps each uploaded file.  What a session keeps is
bounded (`captioner.studio.sessions`): the last caption result (at most ``MAX_PHOTOS``
photos, no rendered pictures) for ``SESSION_TTL_S`` seconds of idleness.

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
import errno
import functools
import html
import logging
import os
import re
import socket
import sys
import tempfile
import threading
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
from captioner.studio import render, sessions  # noqa: E402
from captioner.studio.guard import HostPolicy, StudioGuard  # noqa: E402
from captioner.studio.video_tab import GALLERY_SEEK_JS, ITEM_SHOTS_JS, VideoTab  # noqa: E402

log = logging.getLogger("captioner.studio")

MAX_BEAM = 10
PER_PAGE = 24
#: Largest uploaded file accepted (MB); ``--max-upload-mb`` changes it.
DEFAULT_MAX_UPLOAD_MB = 50
#: Largest request body other than an upload (JSON event data).
MAX_BODY_BYTES = 4 << 20
#: Most photos one /caption call takes (and so one session keeps).
MAX_PHOTOS = 24
#: Longest caption text /save stores.
MAX_CAPTION_CHARS = 500
THUMB_SIZE = 320
#: How long a browser tab's (or a script's) last caption result is kept for saving (seconds,
#: from the /caption that made it); a session idle that long is dropped whole.
SESSION_TTL_S = sessions.SESSION_TTL_S
EXPORT_FORMATS = ("json", "csv")
_HASH = re.compile(r"[0-9a-f]{64}")


class StudioStartError(CaptionerError):
    """The studio could not start (the port is taken, the address is wrong...)."""


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


def upload_folder() -> Path:
    """Where Gradio stores uploads (``GRADIO_TEMP_DIR``, else <temp>/gradio)."""
    try:
        from gradio.utils import get_upload_folder
        folder = get_upload_folder()
    except Exception:  # noqa: BLE001 - an older or newer Gradio: the documented default
        folder = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(folder).resolve()


def _inside(path: str, folder: Path) -> bool:
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError):
        return False
    return resolved.is_relative_to(folder) and resolved != folder


def _readable(message: str, path: str, name: str) -> str:
    """Engine messages name the upload's temporary path; show the user's file name instead."""
    return message.replace(path, name) if message else message


class Studio:
    """The studio's behaviour, one method per event; `build` lays out the widgets."""

    def __init__(self, captioner, gallery: Gallery, *, read_only: bool | None = None):
        self.captioner = captioner
        self.gallery = gallery
        self.model_name = captioner.name
        decoding = captioner.decoding  # the model's default decoding
        self.default_len = decoding.max_len
        self.max_len_limit = max(50, self.default_len)
        self.default_beam = min(decoding.beam_size, MAX_BEAM)
        self.read_only = gallery_is_read_only(gallery) if read_only is None else read_only
        #: Photos must be files Gradio received (None: any path, for Python callers and tests).
        #: Gradio checks this too, but only in an app made by ``launch()``; the studio checks it itself.
        self.upload_dir: Path | None = upload_folder()
        self.thumbs = Path(tempfile.gettempdir()) / "captioner-studio" / "thumbs"
        self.exports = Path(tempfile.gettempdir()) / "captioner-studio" / "exports"
        self.demo: gr.Blocks | None = None
        self._heavy_ids: list[int] = []  # outputs whose values are big HTML (see `forget_rendered`)
        self.video = VideoTab(self)

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

    def _uploads(self, files) -> list[str]:
        """The paths of the File value, each one an upload (a `gr.Error` otherwise)."""
        paths = _paths(files)
        if self.upload_dir is not None:
            for path in paths:
                if not _inside(path, self.upload_dir):
                    log.warning("studio: refused a photo that is not an upload: %s", path)
                    raise gr.Error("Only photos uploaded to the studio can be captioned.", print_exception=False)
        return paths

    def caption(self, files, beam_size, max_length, progress=gr.Progress()):
        """API ``/caption``: caption the photos; returns (JSON result, session state).

        The session keeps what /save needs (names, upload paths, sizes, candidates with their
        attention), for at most `MAX_PHOTOS` photos; pictures are drawn when shown, not kept.
        """
        paths = self._uploads(files)
        beam = _int(beam_size, 1, MAX_BEAM, self.default_beam)
        max_len = _int(max_length, 1, self.max_len_limit, self.default_len)
        if not paths:
            message = "Add one or more photos first (drop them on the box, or click it to choose files)."
            gr.Warning(message)
            return ({"model": self.model_name, "beam_size": beam, "max_length": max_len, "captioned": 0,
                     "failed": 0, "photos": [], "message": message}, {"photos": [], "message": message})
        left_out = max(0, len(paths) - MAX_PHOTOS)
        paths = paths[:MAX_PHOTOS]
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
            candidates = [] if error else [_compact(c) for c in res.candidates]
            photos.append({"index": i, "name": name, "width": width, "height": height, "error": error,
                           "candidates": [{"index": j, **c.to_dict()} for j, c in enumerate(candidates)]})
            entries.append({"name": name, "path": path, "width": width, "height": height, "error": error,
                            "candidates": candidates})
        ok = len(paths) - len(failures)
        message = (f"Captioned {ok} of {len(paths)} photo{'s' if len(paths) != 1 else ''} "
                   f"in {seconds:.1f} s (beam {beam}, up to {max_len} words).")
        if left_out:
            message += (f" {left_out} more photo{'s were' if left_out != 1 else ' was'} left out: "
                        f"at most {MAX_PHOTOS} at a time.")
            gr.Warning(f"Only the first {MAX_PHOTOS} photos were captioned; caption the other {left_out} next.")
        if failures:
            gr.Warning(f"{len(failures)} of {len(paths)} photos could not be captioned: " + "; ".join(failures),
                       duration=20)
        state = {"photos": entries, "beam_size": beam, "message": message}
        return ({"model": self.model_name, "beam_size": beam, "max_length": max_len, "captioned": ok,
                 "failed": len(failures), "message": message, "photos": photos}, state)

    def _photo_view(self, state: dict, index: int):
        """(cards HTML, candidate radio, caption text, candidate index) for one photo.

        The HTML (with its animations, megabytes at beam 10) is drawn for the browser and not
        kept: the session holds only the candidates.
        """
        entry = state["photos"][index]
        try:
            img = render.load_photo(entry["path"])
        except Exception as exc:  # noqa: BLE001 - still show the captions
            log.warning("studio: could not draw %s: %s", entry["name"], exc)
            img = None
        head = render.photo_header(entry["name"], entry["width"], entry["height"], state.get("beam_size"),
                                   self.model_name)
        cards = head + render.candidate_cards(img, entry["candidates"])
        cands = entry["candidates"]
        choices = [(f"#{j + 1}  {c.caption}", j) for j, c in enumerate(cands)]
        return (cards, gr.Radio(choices=choices, value=0, visible=True, interactive=True),
                cands[0].caption, 0)

    def show_results(self, state: dict | None):
        """After /caption: status, photo picker, cards of the first good photo, save controls."""
        photos = _photos(state)
        ok = [i for i, p in enumerate(photos) if not p["error"]]
        status = [state.get("message", "") if isinstance(state, dict) else ""]
        status += [f"- ⚠️ {html.escape(p['error'])}" for p in photos if p["error"]]
        status_md = "\n".join(s for s in status if s)
        if not ok:
            body = render.empty("No captions yet." if not photos else "None of these photos could be captioned.")
            return (status_md, gr.Dropdown(choices=[], value=None, visible=False), body,
                    gr.Radio(choices=[], value=None, visible=False), "", 0, 0, gr.Group(visible=False), "")
        picker = gr.Dropdown(choices=[(f"{i + 1}. {photos[i]['name']}", i) for i in ok], value=ok[0],
                             visible=len(ok) > 1, interactive=True)
        cards, radio, text, cand = self._photo_view(state, ok[0])
        return status_md, picker, cards, radio, text, ok[0], cand, gr.Group(visible=not self.read_only), \
            self._read_only_note()

    def pick_photo(self, state: dict | None, index):
        photos = _photos(state)
        idx = _index(index, len(photos))
        if idx is None or photos[idx]["error"]:
            return render.empty("Nothing to show."), gr.Radio(choices=[], value=None), "", 0, 0, ""
        cards, radio, text, cand = self._photo_view(state, idx)
        return cards, radio, text, idx, cand, ""

    def pick_candidate(self, state: dict | None, photo, cand):
        photos = _photos(state)
        i = _index(photo, len(photos))
        if i is None:
            return gr.skip(), gr.skip()
        cands = photos[i]["candidates"]
        j = _index(cand, len(cands))
        if j is None:
            return gr.skip(), gr.skip()
        return cands[j].caption, j

    def forget_rendered(self, request: gr.Request):
        """After pictures went to the browser: drop Gradio's per-session copy of them (see `sessions`)."""
        if self.demo is not None and request is not None:
            sessions.forget_values(self.demo, request.session_hash, self._heavy_ids)

    # ------------------------------------------------------------------ saving
    def save(self, photo_index, candidate_index, caption, state: dict | None):
        """API ``/save``: store one photo of the last /caption result with the chosen caption."""
        if self.read_only:
            return self._save_error(self._read_only_message())
        photos = _photos(state)
        if not photos:
            return self._save_error("Nothing to save yet: caption a photo first "
                                    f"(a caption result is kept for {SESSION_TTL_S // 60} minutes).")
        idx = _index(photo_index, len(photos))
        if idx is None:
            return self._save_error(f"There is no photo {photo_index!s:.20} in the last result "
                                    f"(0 to {len(photos) - 1}).")
        entry = photos[idx]
        if entry["error"]:
            return self._save_error(f"{entry['name']} has no caption to save: {entry['error']}")
        cands = entry["candidates"]
        j = _index(candidate_index, len(cands))
        if j is None:
            return self._save_error(f"There is no candidate {candidate_index!s:.20} for {entry['name']} "
                                    f"(0 to {len(cands) - 1}).")
        text = " ".join(str(caption or "").split()) or cands[j].caption
        if len(text) > MAX_CAPTION_CHARS:
            return self._save_error(f"The caption is too long ({len(text)} characters; at most "
                                    f"{MAX_CAPTION_CHARS}).")
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

    def _read_only_message(self) -> str:
        return (f"The gallery at {self.gallery.folder} is read-only: it can be browsed and searched, "
                "but nothing can be saved or deleted. Start the studio with a gallery folder you can write to.")

    def _read_only_note(self) -> str:
        return f"⚠️ {html.escape(self._read_only_message())}" if self.read_only else ""

    @staticmethod
    def _save_error(message: str) -> dict:
        gr.Warning(message)
        return {"id": None, "error": message}

    @staticmethod
    def save_message(result: dict | None) -> str:
        if not isinstance(result, dict) or not result:
            return ""
        if result.get("id") is None:
            return f"⚠️ {html.escape(str(result.get('error') or 'Not saved.'))}"
        return f"✅ {html.escape(str(result.get('message', '')))}"

    # ------------------------------------------------------------------ gallery
    def search(self, query, page):
        """API ``/search``: one page of gallery items matching ``query`` (all items if empty).

        Returns (JSON for the caller, the page for this session's grid).  The grid is drawn
        from the second, which stays on the server: nothing the browser sends back names a file.
        """
        text = "" if query is None else str(query)
        page_no = _int(page, 1, 10**9, 1)
        try:
            result = self.gallery.search(text, page_no, PER_PAGE)
            if result.page > result.pages and result.total:  # e.g. after deleting the last item of a page
                result = self.gallery.search(text, result.pages, PER_PAGE)
        except GalleryError as exc:
            gr.Warning(str(exc))
            found = {"query": text, "total": 0, "page": 1, "pages": 1, "per_page": PER_PAGE, "match_all": True,
                     "items": [], "error": str(exc)}
            return found, _grid_page(found)
        found = {"query": text, "total": result.total, "page": result.page, "pages": result.pages,
                 "per_page": result.per_page, "match_all": result.match_all, "items": result.items}
        return found, _grid_page(found)

    def _image_file(self, item: dict) -> Path | None:
        """The item's image file, if it is one of this gallery's files (checked, never trusted)."""
        try:
            path = Path(item["image_path"]).resolve()
            images = Path(self.gallery.images_dir).resolve()
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
        if not _HASH.fullmatch(digest) or source is None:
            log.warning("studio: no thumbnail for item %s: not a gallery image", item.get("id"))
            return None
        target = self.thumbs / f"{digest}.jpg"
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
        page = page if isinstance(page, dict) else _grid_page(None)
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
        i = _index(getattr(evt, "index", None), len(ids))
        if i is None:
            return render.empty("Pick an item in the grid."), None, gr.Row(visible=False), no_player, None
        item_id = ids[i]
        item = self.gallery.get(item_id)
        if item is None:
            return (render.empty("This item is no longer in the gallery."), None, gr.Row(visible=False),
                    no_player, None)
        actions = gr.Row(visible=not self.read_only)
        if item.get("kind") != "video":
            return render.item_details(item), item_id, actions, no_player, None
        matched = _best_match(page, item_id)
        player, seek = self.video.item_player(item, matched)
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
        if self.read_only:
            return f"⚠️ {html.escape(self._read_only_message())}", gr.skip(), gr.skip(), gr.skip()
        removed = self.gallery.delete(item_id)
        message = f"🗑️ Deleted item #{item_id}." if removed else f"Item #{item_id} was already gone."
        return message, None, hidden, render.empty("Pick an item in the grid to see its details.")

    def export(self, fmt):
        fmt = str(fmt or "json").lower()
        if fmt not in EXPORT_FORMATS:
            raise gr.Error(f"Unknown export format {fmt[:20]!r}: use json or csv.", print_exception=False)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.gallery.export(self.exports / f"captioner-gallery-{stamp}.{fmt}", fmt)
        return gr.File(value=str(path), visible=True), f"Exported {self.gallery.count()} items as {fmt.upper()}."

    # ------------------------------------------------------------------ layout
    def build(self) -> gr.Blocks:
        # Uploaded files older than a day are removed from Gradio's cache (hourly); saved photos
        # live in the gallery's own folder.
        with gr.Blocks(title="Captioner Studio", analytics_enabled=False, fill_width=False,
                       delete_cache=(3600, 86400)) as demo:
            ro = " · <b>read-only</b>" if self.read_only else ""
            gr.HTML(f"<style>{render.CSS}</style><div class='studio-title'><h1>Captioner Studio</h1>"
                    f"<p>Model <b>{html.escape(self.model_name)}</b> · gallery "
                    f"<code>{html.escape(str(self.gallery.folder))}</code>{ro} · everything stays on this computer</p>"
                    "</div>", elem_id="studio-header", js_on_load=None)
            session = gr.State({"photos": []}, time_to_live=SESSION_TTL_S)
            grid_page = gr.State(None, time_to_live=SESSION_TTL_S)
            grid_ids = gr.State([], time_to_live=SESSION_TTL_S)
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
                                                  max_length=MAX_CAPTION_CHARS, elem_id="caption-text")
                                save_btn = gr.Button("Save to gallery", variant="primary", elem_id="save-button")
                            save_msg = gr.Markdown("", elem_id="save-message")
                            photo_idx = gr.Number(value=0, precision=0, label="photo index", visible=False)
                            cand_idx = gr.Number(value=0, precision=0, label="candidate index", visible=False)
                            save_json = gr.JSON(label="Saved", visible=False)

                video_heavy = self.video.build(self)

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

            self._heavy_ids = [cards._id, details._id, result_json._id] + [c._id for c in video_heavy]

            def forget(event):
                """Once the pictures are in the browser, the server drops its copy."""
                return event.then(self.forget_rendered, None, None, api_visibility="private", queue=False,
                                  show_progress="hidden")

            # ---- caption tab wiring
            # .change, not .input: it also fires after uploads, and queues the latest value if a
            # previous one (e.g. the clear that switching sources does) is still being handled.
            paste.change(_user_errors(self.add_pasted), [paste, files], [files, paste],
                         api_visibility="private", show_progress="hidden", trigger_mode="always_last")
            forget(go.click(_user_errors(self.caption), [files, beam, max_len], [result_json, session],
                            api_name="caption", show_progress_on=[cards], concurrency_id="engine",
                            concurrency_limit=1).then(
                _user_errors(self.show_results), [session],
                [status, photo_pick, cards, pick, text, photo_idx, cand_idx, save_box, save_msg],
                api_visibility="private", show_progress_on=[cards]))
            forget(photo_pick.input(_user_errors(self.pick_photo), [session, photo_pick],
                                    [cards, pick, text, photo_idx, cand_idx, save_msg],
                                    api_visibility="private", show_progress_on=[cards]))
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
                return event.then(_user_errors(self.show_grid), [grid_page], grid_outputs,
                                  api_visibility="private", show_progress="hidden")

            def then_search(event):
                return then_show(event.then(_user_errors(self.search), [query, page_no], [search_json, grid_page],
                                            api_visibility="private", show_progress="hidden"))

            # The search box starts again at page 1 (the js step; API callers pass the page).
            then_show(gr.on([search_btn.click, query.submit], _user_errors(self.search), [query, page_no],
                            [search_json, grid_page], api_name="search", js="(q, p) => [q, 1]"))
            then_show(gallery_tab.select(_user_errors(self.search), [query, page_no], [search_json, grid_page],
                                         api_visibility="private", show_progress="hidden"))
            then_search(prev_btn.click(None, [page_no], [page_no], js="(p) => Math.max(1, (p || 1) - 1)"))
            then_search(next_btn.click(None, [page_no], [page_no], js="(p) => (p || 1) + 1"))
            opened = grid.select(_user_errors(self.open_item), [grid_ids, grid_page],
                                 [details, selected, item_actions, item_player, item_seek],
                                 api_visibility="private", show_progress_on=[details])
            forget(opened)
            opened.then(None, [item_seek], None, js=GALLERY_SEEK_JS, queue=False, show_progress="hidden")
            # The item to delete is the session's (a State); the browser only says yes or no.
            deleted = delete_btn.click(_user_errors(self.delete), [selected, confirmed],
                                       [gallery_msg, selected, item_actions, details],
                                       api_visibility="private",
                                       js="(id, ok) => [id, confirm('Delete this item from the gallery?')]")
            then_search(deleted)
            deleted.then(self.hide_player, [selected], [item_player, item_seek], api_visibility="private",
                         queue=False, show_progress="hidden")
            export_btn.click(_user_errors(self.export), [fmt], [export_file, gallery_msg], api_visibility="private")
        self.demo = demo
        return demo

    def add_pasted(self, pasted, files):
        """A clipboard / webcam picture joins the list of photos (and the paste box is cleared).

        Both values are Gradio uploads: Gradio refuses paths it did not receive itself.
        """
        if not pasted:  # cleared (also by us, below): nothing to do
            return gr.skip(), gr.skip()
        return self._uploads(files) + self._uploads(pasted), None


def _compact(candidate):
    """The candidate with an attention tensor of its own (not a view keeping a bigger buffer alive)."""
    attention = getattr(candidate, "attention", None)
    if attention is not None and hasattr(attention, "clone"):
        candidate.attention = attention.detach().clone()
    return candidate


def _photos(state: Any) -> list:
    photos = state.get("photos") if isinstance(state, dict) else None
    return photos if isinstance(photos, list) else []


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == value and float(value).is_integer()
    try:
        return float(str(value)).is_integer()
    except ValueError:
        return False


def _index(value: Any, length: int) -> int | None:
    """``value`` as an index into a list of ``length`` items, or None (no negative indexes, no guessing)."""
    if not _is_number(value):
        return None
    i = int(float(value))
    return i if 0 <= i < length else None


def _grid_item(it: dict) -> dict:
    kept = {"id": it["id"], "caption": it["caption"], "image_hash": it["image_hash"], "image_path": it["image_path"]}
    if it.get("kind") == "video":  # and the matched shots, no more (a photo's entry stays these four keys)
        kept["kind"] = "video"
        kept["matched_segments"] = [{"idx": m.get("idx"), "start": m.get("start"), "end": m.get("end"),
                                     "caption": m.get("caption")}
                                    for m in it.get("matched_segments") or [] if isinstance(m, dict)]
    return kept


def _grid_page(found: dict | None) -> dict:
    """What the session keeps of a search result to draw the grid: ids, captions, the server's file paths
    and, for videos, the matched shots (best first)."""
    found = found or {}
    return {"query": found.get("query", ""), "total": found.get("total", 0), "page": found.get("page", 1),
            "pages": found.get("pages", 1), "match_all": found.get("match_all", True),
            "items": [_grid_item(it) for it in found.get("items", [])]}


def _best_match(page: Any, item_id: Any) -> int | None:
    """The index of the best matched shot of item ``item_id`` in the session's grid page, or None."""
    items = page.get("items") if isinstance(page, dict) else None
    for it in items if isinstance(items, list) else []:
        if isinstance(it, dict) and it.get("id") == item_id:
            matched = it.get("matched_segments") or []
            best = matched[0].get("idx") if matched and isinstance(matched[0], dict) else None
            return best if isinstance(best, int) and not isinstance(best, bool) else None
    return None


def gallery_is_read_only(gallery: Gallery) -> bool:
    """Whether the gallery cannot be written to (its own ``read_only`` if it has one, else a file-system check)."""
    flag = getattr(gallery, "read_only", None)
    if isinstance(flag, bool):
        return flag
    folder = Path(gallery.folder)
    targets = [folder, Path(getattr(gallery, "images_dir", folder / "images"))]
    db = Path(getattr(gallery, "db_path", folder / "gallery.db"))
    if db.exists():
        targets.append(db)
    return not all(os.access(t, os.W_OK) for t in targets)


def build_app(captioner, gallery: Gallery) -> gr.Blocks:
    """The studio's Blocks for a loaded `Captioner` and an open `Gallery` (see the module docstring)."""
    return Studio(captioner, gallery).build()


def open_gallery(gallery_dir: str | os.PathLike | None) -> Gallery:
    """Open (or create) the gallery folder; `GalleryError` with a readable reason if it cannot be."""
    folder = Path(gallery_dir if gallery_dir is not None else default_gallery_dir()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise GalleryError(f"The gallery '{folder}' is not a folder: pass a folder with --gallery.")
    try:
        return Gallery(folder)
    except GalleryError as exc:
        if folder.is_dir() and not os.access(folder, os.W_OK):
            raise GalleryError(f"{exc} (the folder is read-only)") from exc
        raise


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or `StudioStartError` saying why not (e.g. the port is taken)."""
    if not 0 < int(port) < 65536:
        raise StudioStartError(f"--port must be between 1 and 65535, not {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise StudioStartError(f"cannot serve on '{host}': {exc.strerror or exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a just-stopped studio's port is fine
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StudioStartError(f"port {port} is already in use on {host} (is another studio running?); "
                                   "choose another one with --port") from None
        raise StudioStartError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def host_policy(host: str, listen: bool, allowed_hosts=()) -> HostPolicy:
    """Loopback always; the ``--host`` name and the ``--allowed-host`` names; any IP address with ``--listen``."""
    names = list(allowed_hosts or ())
    if host and host not in ("0.0.0.0", "::", ""):
        names.append(host)
    try:
        return HostPolicy(names, allow_addresses=listen)
    except ValueError as exc:
        raise StudioStartError(f"--allowed-host: {exc}") from None


def make_app(demo: gr.Blocks, hosts: HostPolicy, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
    """The ASGI app serving ``demo``: Gradio mounted at / behind `StudioGuard` (outermost, so it
    also answers CORS preflights and nothing reaches Gradio's CORS handling before it)."""
    from fastapi import FastAPI

    max_upload = int(float(max_upload_mb) * 2**20)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(StudioGuard, hosts=hosts, max_body_bytes=MAX_BODY_BYTES,
                       max_upload_bytes=max_upload * MAX_PHOTOS + (1 << 20))
    demo.state_session_capacity = sessions.MAX_SESSIONS  # read when the app is made (StateHolder)
    app = gr.mount_gradio_app(app, demo, path="/", footer_links=["api"], show_error=False,
                              max_file_size=max_upload, ssr_mode=False, mcp_server=False,
                              enable_monitoring=False, pwa=False, css=render.CSS)
    # Gradio checks that file inputs are its own uploads only in an app it "launched"; a mounted
    # one is not, so say it is (the studio's handlers check their photos as well).
    demo.has_launched = True
    return app


def serve(app, sock: socket.socket, url: str, *, inbrowser: bool = False, quiet: bool = False) -> None:
    """Serve ``app`` on the bound socket until Ctrl+C / SIGTERM (blocks)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3,
                                           server_header=False))
    if not quiet or inbrowser:
        def announce():
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                if not quiet:
                    print(f"Captioner studio: {url}  (Ctrl+C stops it)", flush=True)
                if inbrowser:
                    import webbrowser
                    webbrowser.open(url)
        threading.Thread(target=announce, name="studio-announce", daemon=True).start()
    server.run(sockets=[sock])


def launch(model_dir: str | os.PathLike | None = None, gallery_dir: str | os.PathLike | None = None,
           host: str = "127.0.0.1", port: int = 7860, listen: bool = False, *, inbrowser: bool = False,
           quiet: bool = False, allowed_hosts=(), max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
    """Load the model and the gallery, then serve the studio (blocks until stopped).

    ``listen=True`` serves on every network interface (0.0.0.0) instead of ``host``; requests
    must then be addressed to a loopback name, an IP address or one of ``allowed_hosts``.
    Raises `CaptionerError` (`StudioStartError` for a taken port) / `GalleryError` with a
    readable message if the studio cannot start.
    """
    from captioner.pipeline import Captioner

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not float(max_upload_mb) > 0:
        raise StudioStartError(f"--max-upload-mb must be more than 0, not {max_upload_mb}")
    bind = "0.0.0.0" if listen else host
    hosts = host_policy(host, listen, allowed_hosts)
    sock = listen_socket(bind, port)  # first: a taken port is said at once, not after loading the model
    try:
        captioner = Captioner.load(model_dir)
        gallery = open_gallery(gallery_dir)
        studio = Studio(captioner, gallery)
        if studio.read_only:
            log.warning("studio: %s", studio._read_only_message())
        demo = studio.build()
        demo.queue(default_concurrency_limit=2)
        app = make_app(demo, hosts, max_upload_mb)
        reaper = sessions.Reaper(demo).start()
    except BaseException:
        sock.close()
        raise
    shown = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    shown = f"[{shown}]" if ":" in shown else shown
    try:
        serve(app, sock, f"http://{shown}:{sock.getsockname()[1]}/", inbrowser=inbrowser, quiet=quiet)
    finally:
        reaper.stop()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    from captioner.cli.studio import add_arguments, run

    parser = argparse.ArgumentParser(prog="python -m captioner.studio.app",
                                     description="Run the captioner studio (a local web app).")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
