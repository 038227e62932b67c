"""HTML pieces for the studio: candidate cards with inline attention animations, item details.

Pure functions of their inputs (no Gradio import) so they are easy to test and reuse; the
pictures come from `captioner.viz.attention`.
"""
from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from captioner.inputs.images import open_image
from captioner.studio.player import player_css
from captioner.viz.attention import attention_frames, frames_to_gif, frames_to_strip

#: Side of the attention frames shown in the studio (pixels, longer side of the photo).
FRAME_SIZE = 224
MS_PER_FRAME = 800
STRIP_COLUMNS = 4

CSS = """
.studio-title h1 { margin: 0; font-size: 1.6rem; }
.studio-title p { margin: 0.2rem 0 0; opacity: 0.75; }
.cand-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 14px;
  align-items: start; }
.candidate-card { border: 1px solid var(--border-color-primary, #d4d4d8);
  border-radius: 10px; padding: 10px 12px 12px; background: var(--block-background-fill, #fff);
  box-shadow: 0 1px 2px rgba(0,0,0,0.06); display: flex; flex-direction: column; gap: 6px; }
.candidate-card.best { border: 2px solid var(--color-accent, #f97316); }
.cand-head { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; font-size: 0.85rem; }
.cand-rank { font-weight: 700; }
.cand-rank .best-tag { background: var(--color-accent, #f97316); color: #fff; border-radius: 999px;
  padding: 1px 8px; margin-left: 6px; font-size: 0.75rem; font-weight: 600; }
.cand-score { font-variant-numeric: tabular-nums; opacity: 0.75; font-size: 0.8rem; margin-top: -4px; }
.cand-caption { font-size: 1.05rem; font-weight: 600; line-height: 1.35; margin: 0; }
.cand-anim { width: 100%; height: auto; border-radius: 6px; display: block; image-rendering: auto; }
.cand-strip summary { cursor: pointer; font-size: 0.85rem; opacity: 0.85; }
.cand-strip img { width: 100%; height: auto; margin-top: 6px; border-radius: 4px; }
.cand-note { font-size: 0.85rem; opacity: 0.75; }
.photo-head { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; margin: 0 0 10px; }
.photo-head .photo-name { font-weight: 700; font-size: 1.05rem; }
.photo-head .photo-meta { opacity: 0.75; font-size: 0.9rem; }
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


def _pictures(img: Image.Image, candidate: Any, size: int) -> tuple[str, str, int] | None:
    """(gif data URI, strip data URI, frame count) for one candidate, or None without attention."""
    frames = attention_frames(img, candidate, size=size)
    if not frames:
        return None
    gif = frames_to_gif(frames, None, ms_per_frame=MS_PER_FRAME)
    buf = io.BytesIO()
    frames_to_strip(frames, columns=STRIP_COLUMNS).save(buf, format="WEBP", quality=80, method=0)
    return data_uri(gif, "image/gif"), data_uri(buf.getvalue(), "image/webp"), len(frames)


def _get(candidate: Any, key: str, default=None):
    if isinstance(candidate, dict):
        return candidate.get(key, default)
    value = getattr(candidate, key, default)
    return value


def candidate_cards(img: Image.Image | None, candidates: Sequence[Any], size: int = FRAME_SIZE,
                    workers: int = 2) -> str:
    """The beam candidates side by side, best first: caption, scores, animation and still strip.

    ``candidates`` are `Candidate` objects or gallery dicts (with ``attention`` to draw the
    animation). Every card has the class ``candidate-card``.
    """
    if not candidates:
        return '<div class="studio-empty">No candidates.</div>'
    if img is not None:
        with ThreadPoolExecutor(max(1, min(workers, len(candidates)))) as pool:
            pictures = list(pool.map(lambda c: _pictures(img, c, size), candidates))
    else:
        pictures = [None] * len(candidates)
    cards = []
    for i, (cand, pics) in enumerate(zip(candidates, pictures)):
        caption = _get(cand, "caption", "")
        score, norm = _get(cand, "score"), _get(cand, "normalized_score")
        score_txt = []
        if score is not None:
            score_txt.append(f'<span title="summed log-probability">log p {float(score):.2f}</span>')
        if norm is not None:
            score_txt.append(f'<span title="log-probability per token">per token {float(norm):.2f}</span>')
        best = ' <span class="best-tag">best</span>' if i == 0 else ""
        parts = [
            f'<div class="candidate-card{" best" if i == 0 else ""}" data-index="{i}">',
            f'<div class="cand-head"><span class="cand-rank">#{i + 1}{best}</span></div>',
            f'<div class="cand-caption">{esc(caption)}</div>',
            f'<div class="cand-score">{" · ".join(score_txt)}</div>',
        ]
        if pics is not None:
            gif, strip, n = pics
            parts.append(f'<img class="cand-anim" src="{gif}" alt="Attention for each word of: {esc(caption)}">')
            parts.append(f'<details class="cand-strip"><summary>Still frames ({n} word{"s" if n != 1 else ""})</summary>'
                         f'<img src="{strip}" alt="Attention frames of: {esc(caption)}"></details>')
        else:
            parts.append('<div class="cand-note">No attention maps stored for this caption.</div>')
        parts.append("</div>")
        cards.append("".join(parts))
    return f'<div class="cand-grid">{"".join(cards)}</div>'


def photo_header(name: str, width: int | None, height: int | None, beam_size: int | None,
                 model_name: str | None) -> str:
    meta = []
    if width and height:
        meta.append(f"{width}×{height} px")
    if beam_size:
        meta.append(f"beam {beam_size}")
    if model_name:
        meta.append(f"model {esc(model_name)}")
    return (f'<div class="photo-head"><span class="photo-name">{esc(name)}</span>'
            f'<span class="photo-meta">{" · ".join(meta)}</span></div>')


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


def grid_label(item: dict) -> str:
    """The label under an item in the gallery grid: its caption; for a video found by a search, the best
    matched shot's caption and times ("a dog runs · 0:03.2–0:07.9")."""
    caption = item.get("caption") or ""
    matched = (item.get("matched_segments") or []) if item.get("kind") == "video" else []
    if isinstance(matched, list) and matched and isinstance(matched[0], dict):
        seg = matched[0]
        return f"{seg.get('caption') or caption} · {_clock(seg.get('start'))}–{_clock(seg.get('end'))}"
    return caption


def empty(message: str) -> str:
    return f'<div class="studio-empty">{esc(message)}</div>'


def error_box(message: str) -> str:
    return f'<div class="studio-error">{esc(message)}</div>'


def _start(value: Any) -> str:
    try:
        return f"{max(0.0, float(value)):.3f}"
    except (TypeError, ValueError):
        return "0"


def item_details(item: dict, size: int = FRAME_SIZE, matched: int | None = None) -> str:
    """Details of one gallery item: photo, facts, the chosen caption and all candidates.

    A video's shots are rows with their start time (``data-start``: the page seeks the item's player
    there when one is clicked); the shot with index ``matched`` (a search's best match) is marked.
    """
    try:
        img = load_photo(item["image_path"], size)
        photo = f'<img class="item-photo" src="{photo_uri(img)}" alt="{esc(item.get("caption"))}">'
    except Exception as exc:  # a missing or damaged file: show the rest
        img, photo = None, error_box(f"The image file could not be read: {exc}")
    facts = [("Item", f"#{item.get('id')}"), ("File", item.get("original_name") or "—"),
             ("Size", f"{item.get('width')}×{item.get('height')} px" if item.get("width") else "—"),
             ("Saved", (item.get("saved_at") or "—").replace("T", " ").replace("+00:00", " UTC")),
             ("Model", item.get("model_name") or "—"), ("Beam size", item.get("beam_size") or "—")]
    if item.get("kind") == "video":
        facts[0:3] = [("Item", f"#{item.get('id')} (video)"), ("File", item.get("original_name") or "—"),
                      ("Size", f"{item.get('width')}×{item.get('height')} px" if item.get("width") else "—"),
                      ("Length", _clock(item.get("duration")))]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    if item.get("kind") == "video":
        rows = "".join(f'<tr class="item-shot{" matched" if matched is not None and seg.get("idx") == matched else ""}"'
                       f' data-start="{_start(seg.get("start"))}" tabindex="0" title="Play from here">'
                       f'<td class="shot-time">{_clock(seg.get("start"))}–{_clock(seg.get("end"))}</td>'
                       f'<td>{esc(seg.get("caption"))}</td></tr>' for seg in item.get("segments") or [])
        shots = (f'<table class="item-shots"><thead><tr><th>Shot</th><th>Caption</th></tr></thead>'
                 f'<tbody>{rows}</tbody></table>' if rows else empty("No shots stored for this video."))
        return (f'<div class="item-details"><div class="item-side">{photo}<dl>{dl}</dl></div>'
                f'<div class="item-cands">{shots}</div></div>')
    return (f'<div class="item-details"><div class="item-side">{photo}'
            f'<div class="chosen">“{esc(item.get("caption"))}”</div><dl>{dl}</dl></div>'
            f'<div class="item-cands">{candidate_cards(img, item.get("candidates") or [], size)}</div></div>')
