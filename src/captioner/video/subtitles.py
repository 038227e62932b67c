"""Timed captions as text: the terminal's `HH:MM:SS.mmm --> HH:MM:SS.mmm  caption` lines, and WebVTT
(webvtt-py) or SRT (srt) files written to a temporary file and moved into place (never half-written)."""
from __future__ import annotations

import datetime
import os
from pathlib import Path

from captioner.atomic_write import AtomicFile
from captioner.errors import CaptionerError

SUBTITLE_SUFFIXES = {".vtt", ".srt"}


def timestamp(seconds: float, sep: str = ".") -> str:
    """`HH:MM:SS.mmm` (SRT uses `,`)."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def segment_line(segment) -> str:
    return f"{timestamp(segment.start)} --> {timestamp(segment.end)}  {segment.caption}"


def is_subtitle_path(path: str | None) -> bool:
    return bool(path) and path != "-" and Path(path).suffix.lower() in SUBTITLE_SUFFIXES


def render(segments, fmt: str) -> str:
    """The segments as a WebVTT (`fmt="vtt"`) or SRT (`"srt"`) document."""
    if fmt == "srt":
        import srt

        subs = [srt.Subtitle(index=n, start=datetime.timedelta(seconds=round(s.start, 3)),
                             end=datetime.timedelta(seconds=round(s.end, 3)), content=s.caption or "")
                for n, s in enumerate(segments, 1)]
        return srt.compose(subs, reindex=False)
    if fmt == "vtt":
        import webvtt

        vtt = webvtt.WebVTT()
        for s in segments:
            vtt.captions.append(webvtt.Caption(timestamp(s.start), timestamp(s.end), s.caption or ""))
        return vtt.content
    raise CaptionerError(f"unknown subtitle format {fmt!r} (vtt or srt)")


def write_subtitles(path: str | os.PathLike, segments) -> None:
    """Write `segments` to `path` (.vtt or .srt by its suffix) through a temporary file in the same folder,
    moved into place only when complete."""
    path = Path(path)
    text = render(segments, path.suffix.lower().lstrip("."))
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        out = AtomicFile(path, "w", fsync=True, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise CaptionerError(f"--out {path}: cannot write it ({exc.strerror or exc})") from None
    try:
        with out as f:
            f.write(text)
    except OSError as exc:
        raise CaptionerError(f"--out {path}: could not write it ({exc.strerror or exc}); nothing was written") from None
