"""What the studio's attention player draws, as data: the photo once (a small JPEG) and, per
candidate, its words and attention maps (words x N x N levels, a few KB), plus the player itself
(``static/attention_player.js`` and ``.css``, drawn in the browser on a canvas).

Pure functions of their inputs (no Gradio import).  The maps are sent as levels 0-255, each word's
map scaled from its least to its most attended cell (as `captioner.viz.attention` draws them), one
byte a cell, base64: a beam-10 result with 7 x 7 maps is under 10 KB; the pictures and GIFs the
studio drew on the server before were megabytes.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from captioner.studio.assets import asset
from captioner.viz.attention import candidate_words_and_maps

#: Longer side of the photo sent to the player (pixels).
DISPLAY_SIDE = 448
#: The photo is shown at most this elongated (width:height or height:width); a longer one (a 20000x100
#: panorama) is shown squeezed to it (the model squashes every photo to a square anyway), in a letterbox.
MAX_DISPLAY_ASPECT = 4.0
#: ...nor smaller than this (a 1x1 image is shown as a block of its colour).
MIN_SIDE = 64
JPEG_QUALITY = 78


def _get(obj: Any, key: str, default=None):
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def display_size(width: int, height: int, side: int = DISPLAY_SIDE,
                 max_aspect: float = MAX_DISPLAY_ASPECT) -> tuple[int, int, bool]:
    """(width, height, squeezed): the size the photo is shown at, its aspect capped at ``max_aspect``."""
    width, height = max(1, int(width)), max(1, int(height))
    aspect = width / height
    capped = min(max(aspect, 1 / max_aspect), max_aspect)
    side = max(MIN_SIDE, min(side, max(width, height)))  # no bigger than the photo (the browser scales it)
    if capped >= 1:
        w, h = side, max(1, round(side / capped))
    else:
        w, h = max(1, round(side * capped)), side
    return w, h, abs(capped - aspect) > 1e-9


def photo_data(img: Image.Image, width: int | None = None, height: int | None = None,
               side: int = DISPLAY_SIDE) -> dict:
    """The photo for the player: ``{"src": JPEG data URL, "w", "h" (as shown), "squeezed", "aspect"}``.

    ``width``/``height``: the photo's true size (``img`` may be a reduced decode); the aspect shown is
    capped (`MAX_DISPLAY_ASPECT`): ``squeezed`` says so and ``aspect`` is the true one.
    """
    width, height = width or img.width, height or img.height
    w, h, squeezed = display_size(width, height, side)
    shown = img.convert("RGB")
    if squeezed or shown.width > w or shown.height > h or (shown.width, shown.height) != (w, h):
        resample = Image.Resampling.NEAREST if min(shown.size) < 4 else Image.Resampling.BILINEAR
        shown = shown.resize((w, h), resample, reducing_gap=2.0)
    buf = io.BytesIO()
    shown.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return {"src": src, "w": w, "h": h, "squeezed": squeezed, "aspect": round(width / max(1, height), 4)}


def attention_levels(candidate: Any) -> dict | None:
    """``{"n": N, "words": k, "levels": base64}`` of a candidate's maps (k x N x N bytes, row-major,
    each word scaled 0-255 from its least to its most attended cell), or None without attention."""
    words, maps = candidate_words_and_maps(candidate)
    if maps is None or not words:
        return None
    k = min(len(words), maps.shape[0])
    maps = np.nan_to_num(maps[:k].astype(np.float32), nan=0.0)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    levels = np.where(span > 1e-12, (maps - lo) / np.where(span > 1e-12, span, 1.0), 0.5)
    data = np.clip(np.rint(levels * 255), 0, 255).astype(np.uint8)
    return {"n": int(maps.shape[1]), "m": int(maps.shape[2]), "words": k,
            "levels": base64.b64encode(data.tobytes()).decode("ascii")}


def _number(value: Any, digits: int) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return round(value, digits) if math.isfinite(value) else None


def candidate_data(candidate: Any) -> dict:
    """One candidate for the player: caption, words, scores, calibrated confidence, attention levels."""
    words, _ = candidate_words_and_maps(candidate)
    return {"caption": str(_get(candidate, "caption") or " ".join(words)), "words": [str(w) for w in words],
            "score": _number(_get(candidate, "score"), 3),
            "per_token": _number(_get(candidate, "normalized_score"), 3),
            "confidence": _number(_get(candidate, "confidence"), 3),
            "attention": attention_levels(candidate)}


def tags_data(tags: Any) -> list[dict]:
    out = []
    for tag in tags or []:
        label = _get(tag, "label")
        if label:
            out.append({"label": str(label), "score": _number(_get(tag, "score"), 3)})
    return out


def player_js() -> str:
    """The player's code, for ``gr.HTML(js_on_load=...)`` (it gets ``element``, ``props``, ``trigger``, ``watch``)."""
    return asset("attention_player.js")


def player_css() -> str:
    return asset("attention_player.css")


def gif_offer_js(view_id: str) -> str:
    """For ``File.change(js=...)``: the GIF the server drew (the File's value) is downloaded at once and a
    link to it shows beside the player's "Animation (GIF)" button (the File itself stays hidden: it
    would sit far below, out of view)."""
    return asset("gif_offer.js").replace("VIEW_ID", view_id)
