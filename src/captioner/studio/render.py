"""HTML pieces for the studio: the page's CSS, photos as data URIs, a gallery video's details, grid
labels, empty and error boxes.  (Attention is drawn in the browser: `captioner.studio.player`.)

Pure functions of their inputs (no Gradio import) so they are easy to test and reuse.
"""
from __future__ import annotations

import base64
import html
import io
import os
import re
from typing import Any

from PIL import Image

from captioner.inputs.images import open_image
from captioner.studio.player import player_css

#: Side of the attention frames shown in the studio (pixels, longer side of the photo).
FRAME_SIZE = 224
MS_PER_FRAME = 800

CSS = """
/* Colours that meet WCAG AA (4.5:1 for text) in both themes; Gradio's defaults did not: white on its orange
   buttons 2.8:1, its grey hints (#bbbbc2) 1.9:1 on white.  (tests/contrast.js checks every text on the page.) */
:root body, :root body.dark { --button-primary-background-fill: #c2410c; --button-primary-background-fill-hover: #9a3412;
  --button-primary-text-color: #ffffff; --button-primary-text-color-hover: #ffffff;
  --button-primary-border-color: #c2410c; --button-primary-border-color-hover: #9a3412;
  --button-cancel-background-fill: #b91c1c; --button-cancel-background-fill-hover: #991b1b;
  --button-cancel-text-color: #ffffff; --button-cancel-text-color-hover: #ffffff;
  --button-cancel-border-color: #b91c1c; --button-cancel-border-color-hover: #991b1b;
  --studio-accent-fill: #c2410c; }
body:not(.dark) { --body-text-color-subdued: #52525b; --block-info-text-color: #52525b; --color-accent: #c2410c; }
/* a file box's long names lose their start, not their end (Gradio cut the end: every COCO photo read
   "000000….jpg") */
.gradio-container td.filename .stem { direction: rtl; text-align: left; }
.studio-title h1 { margin: 0; font-size: 1.6rem; }
.studio-title p { margin: 0.2rem 0 0; opacity: 0.75; }
.studio-empty { padding: 28px; text-align: center; opacity: 0.7; border: 1px dashed var(--border-color-primary, #d4d4d8);
  border-radius: 10px; }
.studio-error { padding: 10px 14px; border-radius: 8px; background: #fef2f2; color: #991b1b; border: 1px solid #fecaca;
  margin: 4px 0; }
.item-details { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.item-side { flex: 0 1 300px; }
.item-cands { flex: 1 1 480px; min-width: 0; }
.item-details .chosen { font-size: 1.15rem; font-weight: 700; margin: 4px 0 10px; }
.item-details dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0 0 12px; font-size: 0.9rem; }
.item-details dt { opacity: 0.7; }
.item-details dd { margin: 0; }
#gallery-grid .grid-wrap.fixed-height, #video-shots .grid-wrap.fixed-height { min-height: 0; max-height: none; }
#gallery-grid .caption-label, #video-shots .caption-label { left: 0; right: 0; bottom: 0; max-width: 100%; white-space: normal;
  border-radius: 0; border: 0; background: rgba(0,0,0,0.62); color: #fff; opacity: 1; font-size: 0.8rem;
  line-height: 1.25; padding: 4px 6px; }
.item-shots { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
.item-shots th, .item-shots td { text-align: left; padding: 4px 10px; border-bottom: 1px solid var(--border-color-primary, #e4e4e7); }
.item-shots .shot-time { white-space: nowrap; font-variant-numeric: tabular-nums; opacity: 0.8; }
.item-shots tr[data-start] { cursor: pointer; }
.item-shots tr[data-start]:hover, .item-shots tr[data-start]:focus { background: var(--background-fill-secondary, #f4f4f5); }
.item-shots tr.matched td { font-weight: 700; }
.item-shots tr.playing td { background: var(--background-fill-secondary, #f4f4f5); }
.item-shots tr.playing td:first-child::before { content: "▶ "; }
.item-photo { max-width: 300px; max-height: 260px; border-radius: 8px; display: block; margin-bottom: 10px; }
""" + player_css()


def esc(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def load_photo(path: str | os.PathLike, size: int = FRAME_SIZE) -> Image.Image:
    """The photo, upright RGB, decoded at (at least) ``size`` for drawing frames."""
    img = open_image(path, draft_size=2 * size)
    img.thumbnail((2 * size, 2 * size), Image.Resampling.BILINEAR)
    return img


def photo_uri(img: Image.Image, size: int = 320) -> str:
    thumb = img.copy()
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.convert("RGB").save(buf, format="JPEG", quality=85)
    return data_uri(buf.getvalue(), "image/jpeg")


def _clock(seconds: Any) -> str:
    """``M:SS.s`` (``H:MM:SS.s`` from an hour on); "—" when unknown."""
    try:
        tenths = max(0, round(float(seconds) * 10))
    except (TypeError, ValueError):
        return "—"
    s, t = divmod(tenths, 10)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}.{t}" if h else f"{m}:{s:02d}.{t}"


def _matching_tag(labels: list, query: str) -> str:
    """The tag a word search found (the first whose words begin like a word of ``query``), else the first."""
    words = [w[:4] for w in re.findall(r"\w+", query.lower()) if w not in ("and", "or", "not", "candidates")]
    labels = [str(t) for t in labels if t]
    for label in labels:
        if any(part.startswith(w) or w.startswith(part[:4]) for part in re.findall(r"\w+", label.lower())
               for w in words):
            return label
    return labels[0] if labels else ""


def match_reason(item: dict, query: str = "") -> str:
    """Why a word search found the item when its caption does not say it, in a few words for its thumbnail
    ("tag: dog", "file name: dog.jpg", "in an unpicked candidate"), or ''."""
    where = item.get("matched_in")
    if where == "tags":
        tag = _matching_tag(item.get("tag_labels") or [], query)
        return f"tag: {tag}" if tag else "in tags"
    if where == "name":
        return f"file name: {item['name']}" if item.get("name") else "in file name"
    if where == "candidates":
        return "in an unpicked candidate"
    return ""


def grid_label(item: dict, query: str = "") -> str:
    """The label under an item in the gallery grid: its caption; for a video found by a search, the best
    matched shot's caption and times ("a dog runs · 0:03.2–0:07.9"); for a photo found by a word search,
    why first ("tag: dog · a cat on a sofa": the caption alone may not say)."""
    caption = item.get("caption") or ""
    matched = (item.get("matched_segments") or []) if item.get("kind") == "video" else []
    if isinstance(matched, list) and matched and isinstance(matched[0], dict):
        seg = matched[0]
        return f"{seg.get('caption') or caption} · {_clock(seg.get('start'))}–{_clock(seg.get('end'))}"
    reason = match_reason(item, query)
    return f"[{reason}] {caption}" if reason else caption


def empty(message: str) -> str:
    return f'<div class="studio-empty">{esc(message)}</div>'


def error_box(message: str) -> str:
    return f'<div class="studio-error">{esc(message)}</div>'


def _start(value: Any) -> str:
    try:
        return f"{max(0.0, float(value)):.3f}"
    except (TypeError, ValueError):
        return "0"


def video_details(item: dict, size: int = FRAME_SIZE, matched: int | None = None, poster: bool = True) -> str:
    """Details of one gallery video: its poster, facts and shots (a photo's are in the attention player:
    `captioner.studio.library_render`).  ``poster=False``: no poster (the video's player is above: the
    poster, shot 1's still, would say another thing than the player at the matched shot).

    The shots are rows with their start time (``data-start``: the page seeks the item's player there
    when one is clicked); the shot with index ``matched`` (a search's best match) is marked.
    """
    photo = ""
    try:
        if poster:
            img = load_photo(item["image_path"], size)
            photo = f'<img class="item-photo" src="{photo_uri(img)}" alt="{esc(item.get("caption"))}">'
    except Exception as exc:  # a missing or damaged file: show the rest
        photo = error_box(f"The image file could not be read: {exc}")
    facts = [("Item", f"#{item.get('id')} (video)"), ("File", item.get("original_name") or "—"),
             ("Size", f"{item.get('width')}×{item.get('height')} px" if item.get("width") else "—"),
             ("Length", _clock(item.get("duration"))),
             ("Saved", (item.get("saved_at") or "—").replace("T", " ").replace("+00:00", " UTC")),
             ("Model", item.get("model_name") or "—"), ("Beam size", item.get("beam_size") or "—")]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    rows = "".join(f'<tr class="item-shot{" matched" if matched is not None and seg.get("idx") == matched else ""}"'
                   f' data-start="{_start(seg.get("start"))}" tabindex="0" title="Play from here">'
                   f'<td class="shot-time">{_clock(seg.get("start"))}–{_clock(seg.get("end"))}</td>'
                   f'<td>{esc(seg.get("caption"))}</td></tr>' for seg in item.get("segments") or [])
    shots = (f'<table class="item-shots"><thead><tr><th>Shot</th><th>Caption</th></tr></thead>'
             f'<tbody>{rows}</tbody></table>' if rows else empty("No shots stored for this video."))
    return (f'<div class="item-details"><div class="item-side">{photo}<dl>{dl}</dl></div>'
            f'<div class="item-cands">{shots}</div></div>')
