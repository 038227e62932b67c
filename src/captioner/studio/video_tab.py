"""The studio's Video tab: caption a video shot by shot, play it with the captions as subtitles, and
look at each shot's candidates with their attention.

The work is `Captioner.caption_video`, asked for a progress report and a small copy of each captioned frame.  As in the photo tab, nothing the
browser sends names a file: the video must be a Gradio upload (checked here), the subtitles are a
WebVTT file the server writes in its own temporary folder, and the shot list and the shot details
come from the session's copy of the result (a ``gr.State``), picked by index.

API (gradio_client; callable, though not listed on the API page), with one ``Client`` per session::

    result = client.predict(handle_file("clip.mp4"), 3, 20, api_name="/caption_video")
    # -> {"model": ..., "name": "clip.mp4", "beam_size": 3, "max_len": 20, "duration": 12.0,
    #     "error": None, "message": "...",
    #     "segments": [{"index": 0, "start": 0.0, "end": 3.0, "frame_time": 1.5,
    #                   "caption": "...", "candidates": [{"caption": ..., "score": ...}, ...]}, ...]}
    # a file that is not a readable video gives "error": "<readable reason>" and no segments.

    saved = client.predict(api_name="/save_video")  # the last /caption_video result of this client
    # -> {"id": 13, "name": "clip.mp4", "segments": 4, "message": "..."} or {"id": None, "error": "..."}
"""
from __future__ import annotations

import html
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
from PIL import Image

from captioner.studio import files, gradio_private, render
from captioner.studio.assets import asset
from captioner.studio.config import MAX_BEAM, MIN_BEAM, MIN_LEN
from captioner.studio.engines import video_engine
from captioner.studio.player import candidate_data, photo_data, player_js, tags_data
from captioner.studio.values import (
    SESSION_TTL_S,
    SHA256_HEX,
    index_in,
    int_value,
    own_attention,
    readable_error,
    save_error,
    save_message,
    user_errors,
)

log = logging.getLogger("captioner.studio")

#: Side of the captioned frames kept per shot (what the attention pictures are drawn on).
FRAME_SIZE = 2 * render.FRAME_SIZE
#: Side of the thumbnails in the shot list.
SHOT_THUMB = 160
#: Longest stretch of video captioned as one shot (seconds), as the CLI's --max-shot default.
MAX_SHOT = 10.0
#: Subtitle files older than this are removed when a new one is written (seconds).
SUBTITLE_TTL_S = 24 * 3600

#: ``/caption_video`` and ``/save_video`` are callable by gradio_client but not (yet) listed on the studio's API page.
API_VISIBILITY = "undocumented"

SEEK_JS = asset("video_seek.js")

#: The Gallery tab: after an item is opened, start its player at the search's best matched shot.  The value
#: is {"t": seconds, "file": the served file's name}; the player's <video> may be replaced when its value
#: changes, so wait (up to 5 s) for the one playing that file, and seek once it knows its length.
GALLERY_SEEK_JS = asset("gallery_seek.js")

#: The Gallery tab's item details (``js_on_load``): a click (or Enter) on a video's shot seeks its player there,
#: plays it, marks the row and brings the player into view.
ITEM_SHOTS_JS = asset("gallery_item_shots.js")

clock = render._clock


def shot_label(seg: dict, low: float | None = None) -> str:
    """A shot in the list: its times, caption and calibrated confidence ("0:03.0–0:07.9 · a dog runs · 83%")."""
    label = f"{clock(seg['start'])}–{clock(seg['end'])} · {seg.get('caption') or ''}"
    confidence = seg.get("confidence")
    if confidence is not None:
        flag = "⚠ low confidence " if low is not None and confidence < low else "confidence "
        label += f" · {flag}{round(100 * float(confidence))}%"
    return label
_EXT = re.compile(r"[a-z0-9]{1,8}")


def _jpeg(img: Image.Image | None) -> bytes | None:
    if img is None:
        return None
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _image(data: bytes | None) -> Image.Image | None:
    if not data:
        return None
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except Exception:  # noqa: BLE001 - a picture that cannot be drawn: show the captions only
        return None


def _segments(state: Any) -> list:
    segs = state.get("segments") if isinstance(state, dict) else None
    return segs if isinstance(segs, list) else []


def studio_ttl_minutes() -> int:

    return SESSION_TTL_S // 60


def _readable_error(message: str, path: str, name: str) -> str:
    return message.replace(path, name) if message else message


def video_size(path: str) -> tuple[int | None, int | None]:
    """The video's picture size as shown (width, height; turned by its display matrix), or (None, None)."""
    from captioner.video.decode import open_video, rotation_of

    try:
        container, stream = open_video(path)
    except Exception:  # noqa: BLE001 - the size is only information
        return None, None
    try:
        width, height = stream.codec_context.width, stream.codec_context.height
        frame = next(iter(container.decode(stream)), None)
        if rotation_of(frame, stream) in (90, 270):
            width, height = height, width
        return width, height
    except Exception:  # noqa: BLE001
        return None, None
    finally:
        container.close()


class VideoTab:
    """The Video tab's events (the `Studio` gives the engine, the upload folder and the limits)."""

    def __init__(self, studio):
        self.studio = studio
        self.subtitles = Path(tempfile.gettempdir()) / "captioner-studio" / "subtitles"
        #: Copies (hard links where possible) of gallery videos being played, named by their sha256.
        self.served = Path(tempfile.gettempdir()) / "captioner-studio" / "videos"

    # ------------------------------------------------------------------ captioning
    def _upload(self, file) -> str | None:
        """The path of the File value, which must be an upload (a `gr.Error` otherwise)."""
        paths = files.uploads(file, self.studio.upload_dir, "a video",
                              "Only videos uploaded to the studio can be captioned.")
        return paths[0] if paths else None

    def _write_vtt(self, segments) -> str:
        from captioner.video.subtitles import write_subtitles

        self.subtitles.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - SUBTITLE_TTL_S
        for old in self.subtitles.glob("*.vtt"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass
        path = self.subtitles / f"{uuid.uuid4().hex}.vtt"
        write_subtitles(path, segments)
        return str(path)

    def caption(self, file, beam_size, max_len, progress=gr.Progress()):
        """API ``/caption_video``: caption one uploaded video; returns (JSON result, session state)."""

        studio = self.studio
        path = self._upload(file)
        beam = int_value(beam_size, MIN_BEAM, MAX_BEAM, studio.default_beam)
        max_len = int_value(max_len, MIN_LEN, studio.max_len_limit, studio.default_len)
        base = {"model": studio.model_name, "beam_size": beam, "max_len": max_len}
        if path is None:
            message = "Add a video first (drop it on the box, or click it to choose a file)."
            gr.Warning(message)
            return ({**base, "name": None, "duration": None, "error": None, "segments": [], "message": message},
                    {"segments": [], "message": message})
        name = os.path.basename(path) or "video"

        def report(stage: str, done: float, total: float | None) -> None:
            if stage == "scan":
                if total:
                    progress(0.6 * min(1.0, done / total), desc=f"Finding the shots of {name}: "
                             f"{done:.0f} of {total:.0f} s")
                else:
                    progress(None, desc=f"Finding the shots of {name}: {done:.0f} s")
            elif stage == "frames":
                progress(0.6, desc=f"Reading the frames of {int(total or 0)} shots")
            else:
                progress(0.65 + 0.35 * done / max(1, total or 1), desc=f"Captioned {int(done)} of {int(total or 0)} shots")

        progress(0, desc=f"Opening {name}")
        start = time.perf_counter()
        engine = video_engine(studio.captioner)  # PyTorch's twin where the captioner captions no videos
        result = engine.caption_video(path, max_shot=MAX_SHOT, name=name, progress=report,
                                      frame_size=FRAME_SIZE, beam_size=beam, max_len=max_len)
        seconds = time.perf_counter() - start
        if result.error is None and not result.segments:
            result.error = f"{name}: no shot could be captioned"
        if result.error is not None:
            error = readable_error(result.error, path, name)
            gr.Warning(error, duration=20)
            message = f"⚠️ {error}"
            return ({**base, "name": name, "duration": None, "error": error, "segments": [], "message": message},
                    {"segments": [], "message": message, "error": error})
        segments, entries = [], []
        for i, seg in enumerate(result.segments):
            cands = [own_attention(c) for c in seg.candidates]
            confidence = getattr(seg, "confidence", None)
            tags = tags_data(getattr(seg, "tags", None))
            warnings = [str(w) for w in getattr(seg, "warnings", None) or []]
            segments.append({"index": i, "start": round(seg.start, 3), "end": round(seg.end, 3),
                             "frame_time": None if seg.frame_time is None else round(seg.frame_time, 3),
                             "caption": seg.caption,
                             "confidence": None if confidence is None else round(float(confidence), 4),
                             "tags": tags, "warnings": warnings,
                             "candidates": [{"index": j, **c.to_dict()} for j, c in enumerate(cands)]})
            entries.append({"start": seg.start, "end": seg.end, "frame_time": seg.frame_time,
                            "caption": seg.caption, "candidates": cands, "frame": _jpeg(seg.frame),
                            "confidence": confidence, "tags": tags, "warnings": warnings})
        n = len(segments)
        message = (f"Captioned {name}: {n} shot{'s' if n != 1 else ''} in {clock(result.duration)} of video, "
                   f"in {seconds:.1f} s (beam {beam}, up to {max_len} words).")
        vtt = self._write_vtt(result.segments)
        state = {"name": name, "path": path, "vtt": vtt, "segments": entries, "duration": result.duration,
                 "beam_size": beam, "message": message, "error": None, "nonce": uuid.uuid4().hex[:8]}
        return ({**base, "name": name, "duration": None if result.duration is None else round(result.duration, 3),
                 "error": None, "segments": segments, "message": message}, state)

    # ------------------------------------------------------------------ showing
    def show(self, state: dict | None):
        """After /caption_video: status line, the player with subtitles, the shot list, the first shot."""
        segs = _segments(state)
        message = state.get("message", "") if isinstance(state, dict) else ""
        if not segs:
            body = {"kind": "shot", "photos": [], "message": "The shots and their captions will appear here."}
            if isinstance(state, dict) and state.get("error"):
                body = {"kind": "shot", "photos": [], "message": state["error"], "error": True}
            return (html.escape(message), gr.Video(value=None, subtitles=None), gr.Gallery(value=[], visible=False),
                    body, None, gr.Button(visible=False), "")
        shots = []
        for seg in segs:
            img = _image(seg.get("frame"))
            if img is None:
                img = Image.new("RGB", (SHOT_THUMB, SHOT_THUMB * 3 // 4), (60, 60, 60))
            img.thumbnail((SHOT_THUMB, SHOT_THUMB))
            shots.append((img, shot_label(seg, self.studio.photos.low_confidence())))
        cards, start = self._shot_view(state, 0)
        return (html.escape(message), gr.Video(value=state["path"], subtitles=state["vtt"]),
                gr.Gallery(value=shots, visible=True, selected_index=0), cards, start,
                gr.Button(visible=not self.studio.read_only), self.studio.read_only_note())

    def _shot_view(self, state: dict, index: int) -> tuple[dict, float]:
        """(the attention player's data for shot ``index``'s captioned frame, the shot's start)."""
        seg = _segments(state)[index]
        img = _image(seg.get("frame"))
        error = None if img is not None else "The shot's frame cannot be shown."
        confidence = seg.get("confidence")
        item = {"key": f"shot{index}-{state.get('nonce', '')}", "index": index,
                "name": f"Shot {index + 1} · {clock(seg['start'])}–{clock(seg['end'])} · frame at {clock(seg['frame_time'])}",
                "width": img.width if img is not None else None, "height": img.height if img is not None else None,
                "error": error, "beam": state.get("beam_size"), "tags": seg.get("tags") or [],
                "warnings": seg.get("warnings") or [], "saved": None,
                "confidence": None if confidence is None else round(float(confidence), 3),
                "photo": photo_data(img) if img is not None else None,
                "candidates": [candidate_data(c) for c in seg["candidates"]] if img is not None else []}
        view = {"kind": "shot", "nonce": f"{state.get('nonce', '')}-{index}", "photos": [item], "selected": 0,
                "low": self.studio.photos.low_confidence(), "high": self.studio.photos.high_confidence(),
                "read_only": True}
        return view, float(seg["start"])

    def animation(self, state: dict | None, evt: gr.EventData):
        """The player's "Animation (GIF)" for the selected shot's frame; a File update."""
        from captioner.studio.photos_tab import animation_gif

        data = gradio_private.event_data(evt)
        segs = _segments(state)
        i = index_in(data.get("photo"), len(segs))
        img = _image(segs[i].get("frame")) if i is not None else None
        if img is None:
            raise gr.Error("Pick a shot first.", print_exception=False)
        j = index_in(data.get("candidate"), len(segs[i]["candidates"]))
        if j is None:
            raise gr.Error("Pick one of the shot's candidates first.", print_exception=False)
        name = f"{os.path.splitext(str(state.get('name') or 'video'))[0]}-shot{i + 1}"
        return gr.File(value=str(animation_gif(img, segs[i]["candidates"][j], name, j)), visible=True)

    def pick_shot(self, state: dict | None, evt: gr.SelectData):
        """A shot clicked in the list: its candidates, and its start time (the page seeks the player there)."""

        segs = _segments(state)
        i = index_in(getattr(evt, "index", None), len(segs))
        if i is None:
            return {"kind": "shot", "photos": [], "message": "Pick a shot in the list."}, None
        return self._shot_view(state, i)

    # ------------------------------------------------------------------ the Gallery tab's player
    def served_video(self, item: dict) -> Path | None:
        """The item's video file as the studio serves it: a link to (or copy of) the gallery's file in the
        studio's own temporary folder, named ``<sha256>.<ext>``; None if the item has no such file.

        ``item`` is the gallery's own (`Gallery.get`, looked up by id on the server); its file must still
        be inside the gallery's ``videos/`` folder and named by a 64-digit hex hash.
        """

        try:
            source = Path(item["video_path"]).resolve(strict=True)
            videos = Path(self.studio.gallery.videos_dir).resolve()
        except (KeyError, TypeError, ValueError, OSError):
            return None
        digest, ext = source.stem, source.suffix[1:].lower()
        if not (source.is_relative_to(videos) and source.is_file() and SHA256_HEX.fullmatch(digest)
                and _EXT.fullmatch(ext)):
            log.warning("studio: item %s: its video is not a gallery video file", item.get("id"))
            return None
        target = self.served / f"{digest}.{ext}"
        tmp = self.served / f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            if target.is_file() and target.stat().st_size == source.stat().st_size:
                return target
            self.served.mkdir(parents=True, exist_ok=True)
            self._prune(self.served)
            with suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.link(source, tmp)  # no copy on the same file system
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
            return target
        except OSError as exc:
            log.warning("studio: item %s: cannot serve its video: %s", item.get("id"), exc)
            return None
        finally:
            with suppress(OSError):
                tmp.unlink()  # left when it and the target were already the same file

    @staticmethod
    def _prune(folder: Path) -> None:
        """Remove served videos made (linked or copied here) more than `SUBTITLE_TTL_S` ago."""
        cutoff = time.time() - SUBTITLE_TTL_S
        for old in folder.glob("*"):
            with suppress(OSError):
                if old.is_file() and old.stat().st_ctime < cutoff:
                    old.unlink()

    def item_player(self, item: dict, matched: int | None = None):
        """(player, seek) for a gallery video item: the player plays the served copy with the shots'
        captions as subtitles; seek is {"t": start, "file": name} for the shot with index ``matched``
        (the page starts the player there), else None."""
        served = self.served_video(item)
        if served is None:
            return gr.Video(value=None, subtitles=None, visible="hidden"), None
        segments = item.get("segments") or []
        vtt = None
        try:
            if segments:
                vtt = self._write_vtt([SimpleNamespace(start=float(s["start"]), end=float(s["end"]),
                                                       caption=s.get("caption") or "") for s in segments])
        except Exception as exc:  # noqa: BLE001 - the video plays without subtitles
            log.warning("studio: item %s: no subtitles: %s", item.get("id"), exc)
        seek = None
        if matched is not None:
            seg = next((s for s in segments if s.get("idx") == matched), None)
            if seg is not None:
                seek = {"t": float(seg["start"]), "file": served.name}
        label = f"{item.get('original_name') or 'Video'} (click a shot below to jump to it)"
        return gr.Video(value=str(served), subtitles=vtt, visible=True, label=label), seek

    # ------------------------------------------------------------------ saving
    def save(self, state: dict | None):
        """API ``/save_video``: store the session's last captioned video, its shots and captions in the gallery."""
        from captioner.storage import GalleryError

        studio = self.studio
        if studio.read_only:
            return save_error(studio.read_only_message())
        segs = _segments(state)
        if not segs:
            return save_error("Nothing to save yet: caption a video first (a result is kept for "
                                      f"{studio_ttl_minutes()} minutes).")
        name, path = state["name"], state["path"]
        segments = [{"start": seg["start"], "end": seg["end"], "caption": seg["caption"],
                     "candidates": [c.to_dict() for c in seg["candidates"]],
                     **({"tags": seg["tags"]} if seg.get("tags") else {})} for seg in segs]
        width, height = video_size(path)
        try:
            item_id = studio.gallery.save_video(
                path, name, segments, poster=_image(segs[0].get("frame")), model_name=studio.model_name,
                beam_size=state.get("beam_size"), width=width, height=height, duration=state.get("duration"))
        except GalleryError as exc:
            return save_error(_readable_error(str(exc), path, name))
        n = len(segs)
        message = f"Saved {name} ({n} shot{'s' if n != 1 else ''}) as gallery item #{item_id}."
        return {"id": item_id, "name": name, "segments": n, "message": message}

    # ------------------------------------------------------------------ layout
    def build(self, studio) -> list:
        """The tab's widgets and events (inside ``gr.Tabs``); returns the components with heavy values."""

        with gr.Tab("Video", id="video", elem_id="tab-video"):
            session = gr.State({"segments": []}, time_to_live=SESSION_TTL_S)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    file = gr.File(label="Video", file_count="single", height=170, elem_id="video-file",
                                   file_types=[".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"])
                    beam = gr.Slider(MIN_BEAM, MAX_BEAM, value=studio.default_beam, step=1, label="Beam size",
                                     elem_id="video-beam-size")
                    max_len = gr.Slider(MIN_LEN, studio.max_len_limit, value=studio.default_len, step=1,
                                        label="Maximum caption length (words)", elem_id="video-max-length")
                    go = gr.Button("Caption", variant="primary", elem_id="video-caption-button")
                    with gr.Accordion("Result as JSON", open=False):
                        result_json = gr.JSON(label="Result", elem_id="video-json")
                with gr.Column(scale=3, min_width=480):
                    status = gr.Markdown("Drop a video in the **Video** box and press **Caption**.", elem_id="video-status")
                    player = gr.Video(label="Video with its captions", interactive=False, elem_id="video-player")
                    shots = gr.Gallery(label="Shots (click one to jump to it)", columns=6, height="auto",
                                       fit_columns=False, allow_preview=False, object_fit="cover", interactive=False,
                                       visible=False, elem_id="video-shots", buttons=[])
                    cards = gr.HTML({"kind": "shot", "photos": [],
                                     "message": "The shots and their captions will appear here."},
                                    html_template="<div class='pv-mount'></div>", js_on_load=player_js(),
                                    apply_default_css=False, elem_id="video-candidates", min_height=120)
                    anim_file = gr.File(label="Attention animation (GIF)", visible=False, interactive=False,
                                        elem_id="video-animation-file")
                    shot_time = gr.Number(value=None, label="shot start", visible=False)
                    save_btn = gr.Button("Save video to gallery", variant="primary", visible=False,
                                         elem_id="video-save-button")
                    save_msg = gr.Markdown("", elem_id="video-save-message")
                    save_json = gr.JSON(label="Saved", visible=False)

        def forget(event):
            return event.then(studio.forget_rendered, None, None, api_visibility="private", queue=False,
                              show_progress="hidden")

        forget(go.click(user_errors(self.caption), [file, beam, max_len], [result_json, session],
                        api_name="caption_video", api_visibility=API_VISIBILITY, show_progress_on=[cards],
                        concurrency_id="engine",
                        concurrency_limit=1).then(
            user_errors(self.show), [session], [status, player, shots, cards, shot_time, save_btn, save_msg],
            api_visibility="private", show_progress_on=[cards]))
        forget(shots.select(user_errors(self.pick_shot), [session], [cards, shot_time],
                            api_visibility="private", show_progress="hidden").then(
            None, [shot_time], None, js=SEEK_JS, queue=False, show_progress="hidden"))
        cards.download(user_errors(self.animation), [session], [anim_file], api_visibility="private",
                       show_progress="minimal")
        save_btn.click(user_errors(self.save), [session], [save_json], api_name="save_video",
                       api_visibility=API_VISIBILITY, show_progress="minimal").then(
            save_message, [save_json], [save_msg], api_visibility="private", queue=False,
            show_progress="hidden")
        return [cards, result_json]
