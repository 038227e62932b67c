"""Checking and shaping what a caller hands the gallery, before anything is written: captions,
beam candidates, tags, confidences, times, ids and file names.  Each check raises a
:class:`GalleryError` that ends "the gallery was not changed"."""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from .errors import GalleryError

#: A video item's caption (its segments' captions joined) is cut near this many characters.
MAX_VIDEO_CAPTION = 500
VIDEO_CAPTION_SEPARATOR = " · "
#: Items may hold at most this many tags (the rest are dropped, lowest scores first).
MAX_TAGS = 50


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def json_default(value: Any) -> Any:
    """Let numpy arrays / torch tensors / numpy scalars go into JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def candidates_json(candidates: Any) -> tuple[str, str | None, list[str]]:
    """Validate beam candidates; return (JSON without attention, attention JSON, captions).

    Attention maps are big (words x N x N floats per candidate), so they are
    kept in their own column, read only by :meth:`Gallery.get` and exports.
    """
    if candidates is None:
        candidates = []
    if not isinstance(candidates, (list, tuple)):
        raise GalleryError("The candidates must be a list of dicts; the gallery was not changed")
    captions = []
    for i, cand in enumerate(candidates):
        if not isinstance(cand, dict) or not isinstance(cand.get("caption"), str):
            raise GalleryError(f"Candidate {i + 1} must be a dict with a text 'caption'; "
                               "the gallery was not changed")
        captions.append(cand["caption"])
    light = [{k: v for k, v in cand.items() if k != "attention"} for cand in candidates]
    maps = [cand.get("attention") for cand in candidates]
    try:
        text = json.dumps(light, default=json_default)
        attention = json.dumps(maps, default=json_default) if any(m is not None for m in maps) else None
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The candidates could not be stored: {exc}; "
                           "the gallery was not changed") from exc
    return text, attention, captions


def as_seconds(value: Any, what: str) -> float:
    """A time in seconds: a finite number, 0 or more."""
    if value is None or isinstance(value, (bool, str, bytes)):
        raise GalleryError(f"The {what} must be a number of seconds, not {value!r}; the gallery was not changed")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The {what} must be a number of seconds, not {value!r}; "
                           "the gallery was not changed") from exc
    if not math.isfinite(number) or number < 0:
        raise GalleryError(f"The {what} must be a number of seconds, 0 or more, not {value!r}; "
                           "the gallery was not changed")
    return number


def segment_rows(segments: Any) -> list[dict]:
    """Validate a video's segments; return the rows to store (idx, start, end, caption, alternatives,
    candidates without attention)."""
    if not isinstance(segments, (list, tuple)) or not segments:
        raise GalleryError("A video needs a non-empty list of segments; the gallery was not changed")
    rows = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, dict):
            raise GalleryError(f"Segment {i + 1} must be a dict; the gallery was not changed")
        start = as_seconds(seg.get("start"), f"start of segment {i + 1}")
        end = as_seconds(seg.get("end"), f"end of segment {i + 1}")
        if start > end:
            raise GalleryError(f"Segment {i + 1} ends ({end:g} s) before it starts ({start:g} s); "
                               "the gallery was not changed")
        caption = seg.get("caption")
        if not isinstance(caption, str):
            raise GalleryError(f"The caption of segment {i + 1} must be text; the gallery was not changed")
        try:
            candidates, _attention, cand_captions = candidates_json(seg.get("candidates"))
        except GalleryError as exc:
            raise GalleryError(f"Segment {i + 1}: {exc}") from exc
        tags, tag_text = tags_json(seg.get("tags"), f"tags of segment {i + 1}")
        rows.append({"idx": i, "start": start, "end": end, "caption": caption,
                     "alternatives": "\n".join(distinct(cand_captions, exclude=[caption])),
                     "candidates": candidates, "tags": tags, "tag_text": tag_text})
    return rows


def distinct(texts: list[str], exclude: tuple[str, ...] | list[str] = ()) -> list[str]:
    """``texts`` without repeats (ignoring case and spacing) and without those in ``exclude``."""
    seen = {norm(t) for t in exclude}
    out = []
    for text in texts:
        if text.strip() and norm(text) not in seen:
            seen.add(norm(text))
            out.append(text)
    return out


def tags_json(tags: Any, what: str = "tags") -> tuple[str | None, str | None]:
    """Validate tags (dicts with ``label`` and ``score``, or objects with those attributes, e.g.
    ``captioner.tags.Tag``); return (JSON list, labels one a line for search), None for None."""
    if tags is None:
        return None, None
    if not isinstance(tags, (list, tuple)):
        raise GalleryError(f"The {what} must be a list of {{label, score}}; the gallery was not changed")
    best: dict[str, float | None] = {}
    for i, tag in enumerate(tags):
        if isinstance(tag, dict):
            label, score = tag.get("label"), tag.get("score")
        else:
            label, score = getattr(tag, "label", None), getattr(tag, "score", None)
        if not isinstance(label, str) or not label.strip():
            raise GalleryError(f"Tag {i + 1} of the {what} needs a text 'label'; the gallery was not changed")
        if score is not None:
            try:
                score = float(score)
            except (TypeError, ValueError) as exc:
                raise GalleryError(f"The score of tag '{label}' must be a number; "
                                   "the gallery was not changed") from exc
            if not math.isfinite(score):
                raise GalleryError(f"The score of tag '{label}' must be finite; the gallery was not changed")
        label = " ".join(label.split())
        if label not in best or (score is not None and (best[label] is None or score > best[label])):
            best[label] = score
    ranked = sorted(best.items(), key=lambda kv: -(kv[1] if kv[1] is not None else -math.inf))[:MAX_TAGS]
    return (json.dumps([{"label": label, "score": score} for label, score in ranked], ensure_ascii=False),
            "\n".join(label for label, _ in ranked))


def as_confidence(value: Any) -> float | None:
    """A confidence: None, or a number from 0 to 1."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The confidence must be a number from 0 to 1, not {value!r}; "
                           "the gallery was not changed") from exc
    if not (0.0 <= number <= 1.0):
        raise GalleryError(f"The confidence must be a number from 0 to 1, not {value!r}; "
                           "the gallery was not changed")
    return number


def video_caption(captions: list[str]) -> str:
    """The distinct segment captions in order, joined with " · ", cut at a caption near
    :data:`MAX_VIDEO_CAPTION` characters (then ending with "…")."""
    parts = [" ".join(c.split()) for c in distinct(captions)]
    text = ""
    for part in parts:
        joined = part if not text else text + VIDEO_CAPTION_SEPARATOR + part
        if len(joined) > MAX_VIDEO_CAPTION:
            if not text:  # one very long caption: cut it at a word
                return part[:MAX_VIDEO_CAPTION].rsplit(" ", 1)[0] + " …"
            return text + VIDEO_CAPTION_SEPARATOR + "…"
        text = joined
    return text


def as_id(item_id: Any) -> int | None:
    """An item id as an int SQLite can hold, or None if it cannot be one."""
    try:
        value = int(item_id)
    except (TypeError, ValueError):
        return None
    return value if -2**63 <= value < 2**63 else None


def optional_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"The {what} must be a whole number, not {value!r}; "
                           "the gallery was not changed") from exc


def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def file_name(name: str) -> str:
    """The last part of a file name or path: the gallery keeps no folders of the computer."""
    return re.split(r"[\\/]", name)[-1]
