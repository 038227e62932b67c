"""The studio's Caption tab: caption one or many photos, compare the beam candidates with their
attention, pick or edit a caption and save it to the gallery.

The work is the `Captioner` (captioning) and `captioner.studio.render` (the candidate cards); the
session keeps the last result (``gr.State``), and the browser's event values are indexes into it.
"""
from __future__ import annotations

import html
import logging
import os
import time

import gradio as gr

from captioner.inputs.sources import InputItem
from captioner.storage import GalleryError
from captioner.studio import render
from captioner.studio.values import (
    MAX_BEAM,
    MAX_CAPTION_CHARS,
    MAX_PHOTOS,
    SESSION_TTL_S,
    file_paths,
    index_in,
    int_value,
    is_inside,
    own_attention,
    readable_error,
    save_error,
    save_message,
    session_photos,
    user_errors,
)

log = logging.getLogger("captioner.studio")


class PhotosTab:
    """The Caption tab's events (the `Studio` gives the engine, the gallery and the limits)."""

    def __init__(self, studio):
        self.studio = studio

    # ------------------------------------------------------------------ captioning
    def _caption_all(self, paths: list[str], names: list[str], beam: int, max_len: int, progress) -> list:
        if len(paths) == 1:
            progress(0.1, desc=f"Captioning {names[0]}")
            return [self.studio.captioner.caption(paths[0], beam_size=beam, max_len=max_len, name=names[0])]
        results = []
        try:
            for i, res in enumerate(self.studio.captioner.caption_many(
                    [InputItem(n, p) for n, p in zip(names, paths)], beam_size=beam, max_len=max_len, batch_size=4)):
                results.append(res)
                progress((i + 1, len(paths)), desc=f"Captioned {names[i]}", unit="photos")
            return results
        except Exception:  # noqa: BLE001 - an unexpected failure in a batch: go one by one
            log.exception("studio: batch captioning failed; retrying photo by photo")
        for i in range(len(results), len(paths)):
            try:
                results.append(self.studio.captioner.caption(paths[i], beam_size=beam, max_len=max_len, name=names[i]))
            except Exception as exc:  # noqa: BLE001
                log.exception("studio: captioning %s failed", names[i])
                from captioner.pipeline import CaptionResult
                results.append(CaptionResult(paths[i], error=f"{names[i]}: could not be captioned "
                                             f"({type(exc).__name__}: {exc})", beam_size=beam))
            progress((i + 1, len(paths)), desc=f"Captioned {names[i]}", unit="photos")
        return results

    def _uploads(self, files) -> list[str]:
        """The paths of the File value, each one an upload (a `gr.Error` otherwise)."""
        paths = file_paths(files)
        if self.studio.upload_dir is not None:
            for path in paths:
                if not is_inside(path, self.studio.upload_dir):
                    log.warning("studio: refused a photo that is not an upload: %s", path)
                    raise gr.Error("Only photos uploaded to the studio can be captioned.", print_exception=False)
        return paths

    def caption(self, files, beam_size, max_length, progress=gr.Progress()):
        """API ``/caption``: caption the photos; returns (JSON result, session state).

        The session keeps what /save needs (names, upload paths, sizes, candidates with their
        attention), for at most `MAX_PHOTOS` photos; pictures are drawn when shown, not kept.
        """
        paths = self._uploads(files)
        beam = int_value(beam_size, 1, MAX_BEAM, self.studio.default_beam)
        max_len = int_value(max_length, 1, self.studio.max_len_limit, self.studio.default_len)
        if not paths:
            message = "Add one or more photos first (drop them on the box, or click it to choose files)."
            gr.Warning(message)
            return ({"model": self.studio.model_name, "beam_size": beam, "max_length": max_len, "captioned": 0,
                     "failed": 0, "photos": [], "message": message}, {"photos": [], "message": message})
        left_out = max(0, len(paths) - MAX_PHOTOS)
        paths = paths[:MAX_PHOTOS]
        names = [os.path.basename(p) or f"photo {i + 1}" for i, p in enumerate(paths)]
        start = time.perf_counter()
        results = self._caption_all(paths, names, beam, max_len, progress)
        seconds = time.perf_counter() - start

        photos, entries, failures = [], [], []
        for i, (path, name, res) in enumerate(zip(paths, names, results)):
            error = readable_error(res.error, path, name) if res.error else None
            if error is None and not res.candidates:
                error = f"{name}: the model produced no caption"
            width, height = (res.width, res.height) if error is None else (None, None)
            if error:
                failures.append(error)
            candidates = [] if error else [own_attention(c) for c in res.candidates]
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
        return ({"model": self.studio.model_name, "beam_size": beam, "max_length": max_len, "captioned": ok,
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
                                   self.studio.model_name)
        cards = head + render.candidate_cards(img, entry["candidates"])
        cands = entry["candidates"]
        choices = [(f"#{j + 1}  {c.caption}", j) for j, c in enumerate(cands)]
        return (cards, gr.Radio(choices=choices, value=0, visible=True, interactive=True),
                cands[0].caption, 0)

    def show_results(self, state: dict | None):
        """After /caption: status, photo picker, cards of the first good photo, save controls."""
        photos = session_photos(state)
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
        return status_md, picker, cards, radio, text, ok[0], cand, gr.Group(visible=not self.studio.read_only), \
            self.studio.read_only_note()

    def pick_photo(self, state: dict | None, index):
        photos = session_photos(state)
        idx = index_in(index, len(photos))
        if idx is None or photos[idx]["error"]:
            return render.empty("Nothing to show."), gr.Radio(choices=[], value=None), "", 0, 0, ""
        cards, radio, text, cand = self._photo_view(state, idx)
        return cards, radio, text, idx, cand, ""

    def pick_candidate(self, state: dict | None, photo, cand):
        photos = session_photos(state)
        i = index_in(photo, len(photos))
        if i is None:
            return gr.skip(), gr.skip()
        cands = photos[i]["candidates"]
        j = index_in(cand, len(cands))
        if j is None:
            return gr.skip(), gr.skip()
        return cands[j].caption, j

    # ------------------------------------------------------------------ saving
    def save(self, photo_index, candidate_index, caption, state: dict | None):
        """API ``/save``: store one photo of the last /caption result with the chosen caption."""
        if self.studio.read_only:
            return save_error(self.studio.read_only_message())
        photos = session_photos(state)
        if not photos:
            return save_error("Nothing to save yet: caption a photo first "
                                    f"(a caption result is kept for {SESSION_TTL_S // 60} minutes).")
        idx = index_in(photo_index, len(photos))
        if idx is None:
            return save_error(f"There is no photo {photo_index!s:.20} in the last result "
                                    f"(0 to {len(photos) - 1}).")
        entry = photos[idx]
        if entry["error"]:
            return save_error(f"{entry['name']} has no caption to save: {entry['error']}")
        cands = entry["candidates"]
        j = index_in(candidate_index, len(cands))
        if j is None:
            return save_error(f"There is no candidate {candidate_index!s:.20} for {entry['name']} "
                                    f"(0 to {len(cands) - 1}).")
        text = " ".join(str(caption or "").split()) or cands[j].caption
        if len(text) > MAX_CAPTION_CHARS:
            return save_error(f"The caption is too long ({len(text)} characters; at most "
                                    f"{MAX_CAPTION_CHARS}).")
        try:
            item_id = self.studio.gallery.save(
                entry["path"], entry["name"], text,
                candidates=[c.to_dict(with_attention=True) for c in cands],
                beam_size=state.get("beam_size"), model_name=self.studio.model_name,
                width=entry["width"], height=entry["height"])
        except GalleryError as exc:
            return save_error(str(exc))
        edited = "" if text == cands[j].caption else " (edited)"
        message = f"Saved “{text}”{edited} for {entry['name']} as gallery item #{item_id}."
        return {"id": item_id, "name": entry["name"], "caption": text, "candidate": j, "message": message}

    def add_pasted(self, pasted, files):
        """A clipboard / webcam picture joins the list of photos (and the paste box is cleared).

        Both values are Gradio uploads: Gradio refuses paths it did not receive itself.
        """
        if not pasted:  # cleared (also by us, below): nothing to do
            return gr.skip(), gr.skip()
        return self._uploads(files) + self._uploads(pasted), None

    # ------------------------------------------------------------------ layout
    def build(self, session: gr.State) -> list:
        """The tab's widgets and events (inside ``gr.Tabs``); returns the components with heavy values.

        ``session`` holds the last caption result of this browser tab.
        """
        with gr.Tab("Caption", id="caption", elem_id="tab-caption"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    files = gr.File(label="Photos", file_count="multiple", height=170,
                                    elem_id="photo-files")
                    paste = gr.Image(label="…or paste / webcam",
                                     sources=["clipboard", "webcam", "upload"], type="filepath",
                                     format="png", height=170, elem_id="photo-paste")
                    beam = gr.Slider(1, MAX_BEAM, value=self.studio.default_beam, step=1, label="Beam size",
                                     info="How many candidate captions to search for and show",
                                     elem_id="beam-size")
                    max_len = gr.Slider(1, self.studio.max_len_limit, value=self.studio.default_len, step=1,
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

        def forget(event):
            """Once the pictures are in the browser, the server drops its copy."""
            return event.then(self.studio.forget_rendered, None, None, api_visibility="private", queue=False,
                              show_progress="hidden")

        # .change, not .input: it also fires after uploads, and queues the latest value if a
        # previous one (e.g. the clear that switching sources does) is still being handled.
        paste.change(user_errors(self.add_pasted), [paste, files], [files, paste],
                     api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        forget(go.click(user_errors(self.caption), [files, beam, max_len], [result_json, session],
                        api_name="caption", show_progress_on=[cards], concurrency_id="engine",
                        concurrency_limit=1).then(
            user_errors(self.show_results), [session],
            [status, photo_pick, cards, pick, text, photo_idx, cand_idx, save_box, save_msg],
            api_visibility="private", show_progress_on=[cards]))
        forget(photo_pick.input(user_errors(self.pick_photo), [session, photo_pick],
                                [cards, pick, text, photo_idx, cand_idx, save_msg],
                                api_visibility="private", show_progress_on=[cards]))
        pick.input(self.pick_candidate, [session, photo_idx, pick], [text, cand_idx],
                   api_visibility="private", queue=False, show_progress="hidden")
        save_btn.click(user_errors(self.save), [photo_idx, cand_idx, text, session], [save_json],
                       api_name="save", show_progress="minimal").then(
            save_message, [save_json], [save_msg], api_visibility="private", queue=False,
            show_progress="hidden")
        return [cards, result_json]
