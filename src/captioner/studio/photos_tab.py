"""The studio's Caption tab: caption one or many photos, see every photo at a glance (thumbnail,
caption, confidence), compare the selected photo's beam candidates with their attention (drawn in
the browser by the attention player, `captioner.studio.player`), pick or edit captions and save them
all to the gallery.

The work is the `Captioner` (captioning, confidence, tags, warnings); the session keeps the list of
photos (``gr.State``), and what the browser sends are indexes into it: a photo, a candidate, and the
caption text to save.  The pictures go to the browser as data (the photo once as a small JPEG, the
attention maps as bytes), and edits live in the browser until they are saved.

One photo is captioned by the studio's own route (`DIRECT_ROUTE`, ``POST /studio/caption``) rather
than a Gradio event: when the file box holds one upload, the server keeps its path under a new
unguessable token for that browser session (`PhotosTab.stage`), and the page's Caption sends only the
token and the settings.  The answer is the player's data, drawn at once; the session's list is updated
on the server as a Gradio event would (Save, Save all and "Result as JSON" see the same list).
Several photos, and a page without a token, go through Gradio's queue as before; scripts use the
queued ``/caption``.
"""
from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import gradio as gr

from captioner.inputs.images import open_image
from captioner.inputs.sources import InputItem
from captioner.storage import GalleryError
from captioner.studio import gradio_private, player, render
from captioner.studio.assets import asset
from captioner.studio.config import MAX_BEAM, MIN_BEAM, MIN_LEN
from captioner.studio.files import uploads
from captioner.studio.values import (
    MAX_CAPTION_CHARS,
    MAX_PHOTOS,
    SESSION_TTL_S,
    index_in,
    int_value,
    is_whole_number,
    own_attention,
    readable_error,
    save_error,
    session_photos,
    user_errors,
)

log = logging.getLogger("captioner.studio")

#: Animation GIFs made on request are removed when a new one is made this long after them (seconds).
ANIMATION_TTL_S = 3600
#: The attention GIF: longer side (px) and palette size (a 448 px, 128-colour GIF was over 500 KB).
GIF_SIDE = 256
GIF_COLOURS = 64
#: The Caption tab's own route for one photo (see the module docstring).
DIRECT_ROUTE = "/studio/caption"
#: A staged photo's token (`PhotosTab.stage`): what ``secrets.token_urlsafe(24)`` makes.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32}")
#: How long a staged photo's token is honoured (seconds), and how many are held at most (oldest dropped).
STAGE_TTL_S = SESSION_TTL_S
MAX_STAGED = 1000


class NotStaged(LookupError):
    """The direct route's token names no photo staged for a live session (unknown, used, expired)."""


def no_progress(*args, **kwargs) -> None:
    """Progress reports of an event without the queue go nowhere."""


def photo_shown(path: str, width: int | None = None, height: int | None = None) -> dict:
    """The attention player's picture of the photo at ``path`` (a small JPEG, `player.photo_data`);
    ``width``/``height``: its true size (default: as read).  Raises when the file cannot be read."""
    img = open_image(path, draft_size=2 * player.DISPLAY_SIDE)
    size = img.info.get("original_size", img.size)
    return player.photo_data(img, width or size[0], height or size[1])


def photo_shown_or_none(path: str) -> dict | None:
    """`photo_shown`, or None when the file cannot be read (`PhotosTab.view` tries again and says why)."""
    try:
        return photo_shown(path)
    except Exception:  # noqa: BLE001
        return None


class PhotosTab:
    """The Caption tab's events (the `Studio` gives the engine, the gallery and the limits)."""

    def __init__(self, studio):
        self.studio = studio
        self._engine = threading.Lock()  # one page Caption at a time (they bypass the queue's limit)
        #: token -> (session hash, upload paths, time staged): photos the direct route may caption
        self._staged: OrderedDict[str, tuple[str, list[str], float]] = OrderedDict()
        self._staged_lock = threading.Lock()
        self._session: gr.State | None = None  # the session's list (made by `build`)
        #: Whether the direct route is served (`add_routes`); without it the page captions through Gradio.
        self.direct = False

    # ------------------------------------------------------------------ captioning
    def warm_up(self) -> None:
        """Caption a small made-up picture at the default and the largest beam, so that the first photo a
        user captions does not pay the engine's first-call costs (loading its parts; PyTorch's kernels: seconds
        on a small CPU)."""
        import numpy as np
        from PIL import Image

        ramp = np.linspace(0, 255, 96, dtype=np.uint8)
        img = Image.fromarray(np.stack([np.add.outer(ramp, ramp) // 2, np.tile(ramp, (96, 1)),
                                        np.tile(ramp[:, None], (1, 96))], axis=-1))
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="captioner-warm-up-") as tmp:
                path = os.path.join(tmp, "warm-up.jpg")
                img.save(path, quality=90)
                with self._engine:  # the way a photo goes: a file decoded, captioned, then sent as a small JPEG
                    for beam in (self.studio.default_beam, self.studio.default_beam, MAX_BEAM):
                        self.studio.captioner.caption(path, beam_size=beam, name="warm-up")
                photo_shown(path)
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the first user some time
            log.exception("studio: warming the engine up failed")
            return
        log.info("studio: engine warmed up in %.1f s", time.perf_counter() - start)

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
                from captioner.result import CaptionResult
                results.append(CaptionResult(paths[i], error=f"{names[i]}: could not be captioned "
                                             f"({type(exc).__name__}: {exc})", beam_size=beam))
            progress((i + 1, len(paths)), desc=f"Captioned {names[i]}", unit="photos")
        return results

    def _uploads(self, files) -> list[str]:
        """The paths of the File value, each one an upload (a `gr.Error` otherwise)."""
        return uploads(files, self.studio.upload_dir, "a photo",
                       "Only photos uploaded to the studio can be captioned.")


    def caption(self, files, beam_size, max_len, add=False, state=None, progress=gr.Progress()):
        """API ``/caption``: caption the photos; returns (JSON result, session state).

        ``add``: keep the photos of the session's list (``state``) and add these after them (at most
        `MAX_PHOTOS` in all); otherwise these replace the list.  The session keeps what saving needs
        (names, upload paths, sizes, candidates with their attention, tags, confidence, warnings);
        pictures are drawn when shown, not kept.  The JSON's photo ``index`` is the photo's place in
        the session's list (what ``/save`` takes).
        """
        paths = self._uploads(files)
        beam = int_value(beam_size, MIN_BEAM, MAX_BEAM, self.studio.default_beam)
        max_len = int_value(max_len, MIN_LEN, self.studio.max_len_limit, self.studio.default_len)
        kept = session_photos(state) if add is True else []
        nonce = (state.get("nonce", 0) if isinstance(state, dict) and isinstance(state.get("nonce"), int) else 0) + 1
        base = {"model": self.studio.model_name, "beam_size": beam, "max_len": max_len}
        if not paths:  # the list on screen stays as it is
            message = "Add one or more photos first (drop them on the box, or click it to choose files)."
            gr.Warning(message)
            return ({**base, "captioned": 0, "failed": 0, "photos": [], "message": message},
                    state if isinstance(state, dict) and session_photos(state) else
                    {"photos": [], "message": message, "nonce": nonce, "engine_s": None})
        room = MAX_PHOTOS - len(kept)
        left_out = max(0, len(paths) - room)
        paths = paths[:max(0, room)]
        names = [os.path.basename(p) or f"photo {i + 1}" for i, p in enumerate(paths)]
        start = time.perf_counter()
        results = self._caption_all(paths, names, beam, max_len, progress) if paths else []
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
            tags = [] if error else player.tags_data(getattr(res, "tags", None))
            confidence = None if error else getattr(res, "confidence", None)
            warnings = [] if error else [str(w) for w in getattr(res, "warnings", None) or []]
            index = len(kept) + i
            photos.append({"index": index, "name": name, "width": width, "height": height, "error": error,
                           "tags": tags, "confidence": None if confidence is None else round(float(confidence), 4),
                           "warnings": warnings,
                           "candidates": [{"index": j, **c.to_dict()} for j, c in enumerate(candidates)]})
            entries.append({"key": uuid.uuid4().hex[:12], "name": name, "path": path, "width": width,
                            "height": height, "error": error, "candidates": candidates, "beam_size": beam,
                            "tags": tags, "confidence": confidence, "warnings": warnings, "saved": None,
                            # the result for Gallery.save_result, holding the candidates' own small maps
                            # (not views of the batch's attention tensor) and no encoder features
                            "result": None if error else dataclasses.replace(res, candidates=candidates,
                                                                             features=None)})
        ok = len(paths) - len(failures)
        message = (f"Captioned {ok} of {len(paths)} photo{'s' if len(paths) != 1 else ''} "
                   f"(the engine took {seconds:.1f} s; beam {beam}, up to {max_len} words).")
        if kept:
            message += f" Added to the {len(kept)} photo{'s' if len(kept) != 1 else ''} already in the list."
        if left_out:
            message += (f" {left_out} more photo{'s were' if left_out != 1 else ' was'} left out: "
                        f"at most {MAX_PHOTOS} in the list.")
            gr.Warning(f"At most {MAX_PHOTOS} photos in the list: {left_out} were left out; "
                       "save these and caption the others next.")
        if failures:
            gr.Warning(f"{len(failures)} of {len(paths)} photos could not be captioned: " + "; ".join(failures),
                       duration=20)
        state = {"photos": kept + entries, "beam_size": beam, "message": message, "nonce": nonce,
                 "engine_s": round(seconds, 3),
                 "selected": next((len(kept) + i for i, e in enumerate(entries) if not e["error"]), len(kept))}
        return ({**base, "captioned": ok, "failed": len(failures), "message": message, "photos": photos}, state)

    def caption_page(self, files, beam_size, max_len, add=False, state=None):
        """The page's Caption for one photo, without the queue: `caption` and `show_results` in one
        answer (session state, status line, the player's data, the emptied file box)."""
        paths = self._uploads(files)
        with ThreadPoolExecutor(1) as pool:  # the picture to show is made while the engine works
            shown = {path: pool.submit(photo_shown_or_none, path) for path in paths[:1]}
            with self._engine:
                result, state = self.caption(files, beam_size, max_len, add, state, progress=no_progress)
            prepared = {path: future.result() for path, future in shown.items()}
        return self._page_answer(result, state, prepared)

    def caption_page_queued(self, files, beam_size, max_len, add=False, state=None, progress=gr.Progress()):
        """The page's Caption for several photos: the same answer, through the queue (a progress bar)."""
        with self._engine:
            result, state = self.caption(files, beam_size, max_len, add, state, progress=progress)
        return self._page_answer(result, state)

    def _page_answer(self, result: dict, state, prepared: dict | None = None) -> tuple:
        """(session state, status line, the player's data, the emptied file box).  The session keeps the
        JSON result (no attention: small) for the page's "Result as JSON"."""
        if isinstance(state, dict):
            state["result"] = result
        return state, self.status_line(state), self.view(state, prepared), None

    def status_line(self, state) -> str:
        """The status line (Markdown) after a Caption: its message, each photo's error, the read-only
        note.  With nothing captioned, the message says why (a toast needs the queue; the list stays)."""
        result = state.get("result") if isinstance(state, dict) else None
        if isinstance(result, dict) and not result.get("photos") and result.get("message"):
            return f"⚠️ {html.escape(result['message'])}"
        photos = session_photos(state)
        status = [state.get("message", "") if isinstance(state, dict) else ""]
        status += [f"- ⚠️ {html.escape(p['error'])}" for p in photos if p["error"]]
        if self.studio.read_only:
            status.append(self.studio.read_only_note())
        return "\n".join(s for s in status if s)

    def page_shown(self, state) -> tuple:
        """After the page drew a direct Caption's answer: (status line, the JSON result) from the session."""
        return self.status_line(state), self.result_json(state)

    # ------------------------------------------------------------------ the direct route (one photo)
    def stage(self, files, request: gr.Request = None) -> str:
        """The file box changed: when it holds one upload (`_uploads`), keep its path on the server under
        a new unguessable token for this browser session; the session's earlier token is void.  Returns
        JSON text ``{"token", "paths"}`` for the page (an empty token: the page captions through Gradio);
        the paths are the page's own file values, so that it can tell which photo a token stands for."""
        session = getattr(request, "session_hash", None)
        now = time.monotonic()
        with self._staged_lock:
            for token in [t for t, (s, _, at) in self._staged.items() if s == session or now - at > STAGE_TTL_S]:
                del self._staged[token]
        empty = json.dumps({"token": "", "paths": []})
        if not self.direct or not session:
            return empty
        try:
            paths = self._uploads(files)
        except gr.Error:
            return empty
        except Exception:  # noqa: BLE001 - a drop must never fail: the Caption click goes through Gradio then
            log.exception("studio: staging the file box's photo failed")
            return empty
        if len(paths) != 1:  # several photos: through the queue, with a progress bar
            return empty
        token = secrets.token_urlsafe(24)
        with self._staged_lock:
            self._staged[token] = (session, paths, now)
            while len(self._staged) > MAX_STAGED:
                self._staged.popitem(last=False)
        return json.dumps({"token": token, "paths": paths})

    def _take_staged(self, token: Any) -> tuple[str, list[str]]:
        """The session and photo staged under ``token``, which is used up; `NotStaged` if there is none."""
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            raise NotStaged("not a token")
        with self._staged_lock:
            staged = self._staged.pop(token, None)
        if staged is None or time.monotonic() - staged[2] > STAGE_TTL_S:
            raise NotStaged("unknown or expired token")
        return staged[0], staged[1]

    def caption_direct(self, token: Any, beam_size: Any, max_len: Any, add: Any) -> dict:
        """The direct route's work: caption the photo staged under ``token`` (see `stage`) into its
        session's list, as `caption_page` does; returns ``{"view": the player's data, "status"}``.
        Raises `NotStaged` when the token names no photo of a live session."""
        session_hash, paths = self._take_staged(token)
        session = gradio_private.live_session(self.studio.demo, session_hash)
        if self._session is None or session is None:
            raise NotStaged("the session is gone")
        state, status, view, _ = self.caption_page(paths, beam_size, max_len, add is True,
                                                   gradio_private.state_value(session, self._session))
        gradio_private.set_state_value(session, self._session, state)
        return {"view": view, "status": status}

    def add_routes(self, app) -> None:
        """Serve `DIRECT_ROUTE` on ``app`` (the FastAPI app Gradio is mounted on, behind `StudioGuard`).

        It answers only the studio's own page: a POST of JSON ``{"token", "beam_size", "max_len",
        "add"}`` with an ``Origin`` that is the studio's own (`guard.same_origin`; the guard refuses
        other origins before this), and a token that `stage` gave to a live session (used once).
        Nothing in the request names a file."""
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        from captioner.studio.guard import same_origin

        def refuse(status: int, message: str) -> JSONResponse:
            return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})

        async def caption_now(request):  # a Starlette route: it gets the request, nothing else
            origin, host = request.headers.get("origin"), request.headers.get("host") or ""
            if not origin or not same_origin(origin, host, request.url.scheme):
                return refuse(403, "Only the studio's own page may use this route.")
            if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return refuse(415, "Send JSON.")
            try:
                body = await request.json()
            except ValueError:
                return refuse(400, "Send JSON.")
            if not isinstance(body, dict) or not set(body) <= {"token", "beam_size", "max_len", "add"}:
                return refuse(400, "Send {token, beam_size, max_len, add}.")
            try:
                answer = await run_in_threadpool(self.caption_direct, body.get("token"), body.get("beam_size"),
                                                 body.get("max_len"), body.get("add"))
            except NotStaged as exc:
                log.info("studio: refused a direct Caption (%s)", exc)
                return refuse(403, "This photo is not staged for this page: drop it again or reload the page.")
            except Exception:  # noqa: BLE001 - the page falls back to the Gradio event, which says what is wrong
                log.exception("studio: the direct Caption failed")
                return refuse(500, "Captioning failed; see the studio's console.")
            return JSONResponse(answer, headers={"Cache-Control": "no-store"})

        app.router.add_route(DIRECT_ROUTE, caption_now, methods=["POST"], include_in_schema=False)
        self.direct = True

    @staticmethod
    def result_json(state) -> dict | None:
        """The last Caption's JSON result (the one ``/caption`` returns), for the page's accordion."""
        return state.get("result") if isinstance(state, dict) else None

    # ------------------------------------------------------------------ showing
    def view(self, state: dict | None, prepared: dict | None = None) -> dict:
        """What the attention player draws (`captioner.studio.player`): every photo of the session's list
        with its picture (a small JPEG), tags, confidence, warnings and candidates with their attention.
        ``prepared``: pictures already made, by upload path."""
        entries = session_photos(state)
        photos = []
        for i, entry in enumerate(entries):
            item = {"key": entry.get("key") or str(i), "index": i, "name": entry["name"], "width": entry["width"],
                    "height": entry["height"], "error": entry["error"], "beam": entry.get("beam_size"),
                    "tags": entry.get("tags") or [], "warnings": entry.get("warnings") or [],
                    "confidence": None if entry.get("confidence") is None else round(float(entry["confidence"]), 3),
                    "saved": entry.get("saved"), "photo": None, "candidates": []}
            if not entry["error"]:
                item["candidates"] = [player.candidate_data(c) for c in entry["candidates"]]
                try:
                    item["photo"] = ((prepared or {}).get(entry["path"])
                                     or photo_shown(entry["path"], entry["width"], entry["height"]))
                except Exception as exc:  # noqa: BLE001 - still show the captions
                    log.warning("studio: could not draw %s: %s", entry["name"], exc)
                    item["error"] = f"{entry['name']}: captioned, but the picture cannot be shown ({exc})"
            photos.append(item)
        selected = state.get("selected") if isinstance(state, dict) else None
        return {"kind": "photos", "nonce": state.get("nonce") if isinstance(state, dict) else None,
                "photos": photos, "selected": index_in(selected, len(photos)),
                "engine_s": state.get("engine_s") if isinstance(state, dict) else None,
                "low": self.low_confidence(), "high": self.high_confidence(),
                "read_only": bool(self.studio.read_only),
                "empty": "No captions yet." if not photos else None}

    def low_confidence(self) -> float | None:
        """Below this calibrated confidence a caption is flagged (the model's calibration says where)."""
        scorer = getattr(self.studio.captioner, "scorer", None)
        low = getattr(scorer, "low", None)
        return float(low) if isinstance(low, (int, float)) else None

    def high_confidence(self) -> float | None:
        """From this calibrated confidence on, a caption is shown as likely right (green): only when the model's
        calibration has such a threshold and it holds on everyday photos (coco-dev) as well as on Flickr8k
        (its ``high``); None (today's calibration: its confidence does not rank captions on everyday photos,
        AUC 0.52 on coco-dev): no green at all."""
        scorer = getattr(self.studio.captioner, "scorer", None)
        high = getattr(scorer, "high", None)
        return float(high) if isinstance(high, (int, float)) and not isinstance(high, bool) else None

    def show_results(self, state: dict | None, prepared: dict | None = None):
        """After /caption: (status line, the player's data, the emptied file box: its photos are in the
        list now, and the next drop is captioned next, replacing the list or added to it).
        ``prepared``: pictures already made (see `view`)."""
        return self.status_line(state), self.view(state, prepared), None

    # ------------------------------------------------------------------ saving
    def _save_one(self, state: dict, photo_index, candidate_index, caption) -> dict:
        """Save one photo of the session's list with candidate ``candidate_index``'s caption, or ``caption``
        (the user's edit) when it is not empty.  Returns {"id", "photo", "caption", "message"} or
        {"id": None, "photo", "error"}; nothing here names a file: indexes into the session's list only."""
        photos = session_photos(state)
        if not photos:
            return {"id": None, "photo": None,
                    "error": "Nothing to save yet: caption a photo first "
                             f"(a caption result is kept for {SESSION_TTL_S // 60} minutes)."}
        idx = index_in(photo_index, len(photos))
        if idx is None:
            return {"id": None, "photo": None,
                    "error": f"There is no photo {photo_index!s:.20} in the list (0 to {len(photos) - 1})."}
        entry = photos[idx]
        if entry["error"]:
            return {"id": None, "photo": idx, "error": f"{entry['name']} has no caption to save: {entry['error']}"}
        cands = entry["candidates"]
        j = index_in(candidate_index, len(cands))
        if j is None:
            return {"id": None, "photo": idx, "error": f"There is no candidate {candidate_index!s:.20} for "
                                                      f"{entry['name']} (0 to {len(cands) - 1})."}
        text = " ".join(str(caption or "").split())[:MAX_CAPTION_CHARS + 1] or cands[j].caption
        if len(text) > MAX_CAPTION_CHARS:
            return {"id": None, "photo": idx, "error": f"{entry['name']}: the caption is too long (at most "
                                                      f"{MAX_CAPTION_CHARS} characters)."}
        edited = text != cands[j].caption
        try:
            item_id = self.studio.gallery.save_result(entry["path"], entry["result"], name=entry["name"],
                                                      model=self.studio.model_name, choice=j, caption=text)
        except GalleryError as exc:
            return {"id": None, "photo": idx, "error": readable_error(str(exc), entry["path"], entry["name"])}
        entry["saved"] = {"id": item_id, "caption": text}
        note = " (edited)" if edited else ""
        return {"id": item_id, "photo": idx, "name": entry["name"], "caption": text, "candidate": j,
                "message": f"Saved “{text}”{note} for {entry['name']} as gallery item #{item_id}."}

    def save(self, photo_index, candidate_index, caption, state: dict | None):
        """API ``/save``: store one photo of the session's list with the chosen (or edited) caption."""
        if self.studio.read_only:
            return save_error(self.studio.read_only_message())
        result = self._save_one(state if isinstance(state, dict) else {}, photo_index, candidate_index, caption)
        if result["id"] is None:
            return save_error(result["error"])
        return result

    def save_choices(self, choices: Any, state: dict | None) -> dict:
        """Save several photos: ``choices`` is a list of {"photo": index, "candidate": index, "text": str}
        (what the browser keeps until saved).  Returns {"results": [...], "saved": n, "message"}; a
        photo that cannot be saved (a duplicate, a bad index) gets its message and the others are saved."""
        if self.studio.read_only:
            return {"results": [], "saved": 0, "error": self.studio.read_only_message()}
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            return {"results": [], "saved": 0, "error": "Nothing to save."}
        state = state if isinstance(state, dict) else {}
        results, seen = [], set()
        for choice in choices[:MAX_PHOTOS]:
            photo = choice.get("photo")
            if is_whole_number(photo) and int(float(photo)) in seen:
                continue  # one caption per photo and click
            if is_whole_number(photo):
                seen.add(int(float(photo)))
            text = choice.get("text")
            results.append(self._save_one(state, photo, choice.get("candidate"),
                                          text if isinstance(text, str) else ""))
        saved = sum(1 for r in results if r["id"] is not None)
        message = f"Saved {saved} of {len(results)} photo{'s' if len(results) != 1 else ''}."
        return {"results": results, "saved": saved, "message": message}

    def save_all(self, state: dict | None, evt: gr.EventData):
        """The player's Save / Save all (its event data carries the choices): the result JSON, which the
        player shows under its Save buttons, once (no second message below it, no toast)."""
        return self.save_choices(gradio_private.event_data(evt).get("choices"), state)

    # ------------------------------------------------------------------ the animation as a file
    def animation(self, state: dict | None, evt: gr.EventData):
        """The player's "Animation (GIF)": the selected candidate's animation drawn on the server
        (`captioner.viz.attention`) into the studio's own temporary folder; a File update."""
        data = gradio_private.event_data(evt)
        photos = session_photos(state)
        i = index_in(data.get("photo"), len(photos))
        if i is None or photos[i]["error"]:
            raise gr.Error("Pick a captioned photo first.", print_exception=False)
        entry = photos[i]
        j = index_in(data.get("candidate"), len(entry["candidates"]))
        if j is None:
            raise gr.Error("Pick one of the photo's candidates first.", print_exception=False)
        return gr.File(value=str(animation_gif(render.load_photo(entry["path"]), entry["candidates"][j],
                                               entry["name"], j)), visible="hidden")

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

        ``session`` holds the list of photos of this browser tab.
        """
        self._session = session
        with gr.Tab("Caption", id="caption", elem_id="tab-caption"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=280):
                    files = gr.File(label="Photos (drop them here, then press Caption)", file_count="multiple", height=170,
                                    elem_id="photo-files")
                    paste = gr.Image(label="…or paste / webcam",
                                     sources=["clipboard", "webcam", "upload"], type="filepath",
                                     format="png", height=170, elem_id="photo-paste")
                    add = gr.Checkbox(value=False, label="Add to the list",
                                      info="Keep the photos captioned before and add these (else they replace them)",
                                      elem_id="add-photos")
                    beam = gr.Slider(MIN_BEAM, MAX_BEAM, value=self.studio.default_beam, step=1, label="Beam size",
                                     info="How many candidate captions to search for and show",
                                     elem_id="beam-size")
                    max_len = gr.Slider(MIN_LEN, self.studio.max_len_limit, value=self.studio.default_len, step=1,
                                        label="Maximum caption length (words)", elem_id="max-length")
                    go = gr.Button("Caption", variant="primary", elem_id="caption-button")
                    with gr.Accordion("Result as JSON", open=False):
                        result_json = gr.JSON(label="Result", elem_id="caption-json")
                with gr.Column(scale=3, min_width=320):
                    status = gr.Markdown("Drop photos in the **Photos** box and press **Caption**.",
                                         elem_id="caption-status")
                    view = gr.HTML(None, html_template="<div class='pv-mount'></div>", js_on_load=player.player_js(),
                                   apply_default_css=False, elem_id="photos-view", min_height=120)
                    anim_file = gr.File(label="Attention animation (GIF)", visible="hidden", interactive=False,
                                        elem_id="animation-file")
                    save_json = gr.JSON(label="Saved", visible=False)
                    # /save (one photo, for scripts: gradio_client); the page saves through the player
                    save_idx, cand_idx = gr.Number(visible=False), gr.Number(visible=False)
                    save_text = gr.Textbox(visible=False)
                    save_api = gr.Button(visible=False)
                    caption_api = gr.Button(visible=False)
                    now = gr.Button(visible="hidden", elem_id="caption-now")
                    queued_go = gr.Button(visible="hidden", elem_id="caption-queued")
                    staged = gr.Textbox(visible=False)  # the token of the photo in the file box (`stage`)
                    shown = gr.Button(visible="hidden", elem_id="caption-shown")

        def forget(event):
            """Once the pictures are in the browser, the server drops its copy."""
            return event.then(self.studio.forget_rendered, None, None, api_visibility="private", queue=False,
                              show_progress="hidden")

        # .change, not .input: it also fires after uploads, and queues the latest value if a
        # previous one (e.g. the clear that switching sources does) is still being handled.
        paste.change(user_errors(self.add_pasted), [paste, files], [files, paste],
                     api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        # One upload in the file box: the server keeps it under a token for this page (`stage`), which
        # the page's Caption sends to the studio's own route (`add_routes`).
        files.change(None, None, None, js=STAGING_JS, api_visibility="private", queue=False, show_progress="hidden")
        files.change(self.stage, [files], [staged], api_visibility="private", queue=False,
                     show_progress="hidden").then(
            None, [staged], None, js=STAGED_JS, api_visibility="private", queue=False, show_progress="hidden")
        # The page's Caption: one photo by the direct route when the page has its token (no Gradio event
        # machinery: ~30 ms less), else by an event without the queue; several through the queue (a
        # progress bar). The button only picks which; scripts call the queued /caption.
        go.click(None, [files, beam, max_len, add], None, js=DISPATCH_JS, api_visibility="private", queue=False,
                 show_progress="hidden")
        # after the page drew a direct answer: the status line and the JSON from the session's list
        shown.click(user_errors(self.page_shown), [session], [status, result_json], api_visibility="private",
                    queue=False, show_progress="hidden")
        page_outputs = [session, status, view, files]
        for trigger, fn, queued in ((now, self.caption_page, False), (queued_go, self.caption_page_queued, True)):
            forget(trigger.click(user_errors(fn), [files, beam, max_len, add, session], page_outputs,
                                 api_visibility="private", show_progress_on=[view], queue=queued,
                                 **({"concurrency_id": "engine", "concurrency_limit": 1} if queued else {})).then(
                self.result_json, [session], [result_json], api_visibility="private", queue=False,
                show_progress="hidden"))
        caption_api.click(user_errors(self.caption), [files, beam, max_len, add, session], [result_json, session],
                          api_name="caption", concurrency_id="engine", concurrency_limit=1)
        view.submit(user_errors(self.save_all), [session], [save_json], api_visibility="private",
                    show_progress="minimal").then(
            None, [save_json], None, js=SAVED_JS, queue=False, show_progress="hidden")
        view.download(user_errors(self.animation), [session], [anim_file], api_visibility="private",
                      show_progress="minimal")
        anim_file.change(None, [anim_file], None, js=player.gif_offer_js("photos-view"), queue=False,
                         show_progress="hidden")
        save_api.click(user_errors(self.save), [save_idx, cand_idx, save_text, session], [save_json],
                       api_name="save", show_progress="hidden")
        return [view, result_json]


#: The Caption button: one photo by the direct route (the attention player's ``captionerCaptionNow``,
#: false when it cannot: no token for this photo, or the route refused), else without the queue (or
#: none: the event says what to do); several through the queue (with a progress bar).
DISPATCH_JS = asset("caption_dispatch.js")

#: The file box changed: its token is void until the server's `stage` answers (`STAGED_JS`).
STAGING_JS = asset("caption_staging.js")

#: The server's answer to `stage`: the token of the photo in the file box, and its path as the page knows it.
STAGED_JS = asset("caption_staged.js")

#: After a save from the player: tell it which photos were saved (and the messages).
SAVED_JS = """(r) => { const p = (window.captionerPlayers || {}).photos; if (p && r) { p.saved(r); } return []; }"""


def animation_gif(img, candidate, name: str, index: int) -> Path:
    """Draw ``candidate``'s attention animation over ``img`` as a GIF in the studio's temporary folder."""
    from captioner.viz.attention import attention_frames, frames_to_gif

    folder = Path(tempfile.gettempdir()) / "captioner-studio" / "animations"
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - ANIMATION_TTL_S
    for old in folder.glob("*/*.gif"):
        with suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()
                old.parent.rmdir()
    frames = attention_frames(img, candidate, size=GIF_SIDE)
    if not frames:
        raise gr.Error("This caption has no attention maps to animate.", print_exception=False)
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in os.path.splitext(name)[0])[:60] or "photo"
    dest = folder / uuid.uuid4().hex[:8] / f"{stem}-caption{index + 1}-attention.gif"
    dest.parent.mkdir()
    frames_to_gif(frames, dest, ms_per_frame=render.MS_PER_FRAME, colors=GIF_COLOURS)
    return dest
