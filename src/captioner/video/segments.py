"""From shots to captioned segments: long shots split, one frame chosen per segment (the sharpest of a
few near its middle), captions by the photo pipeline, consecutive equal captions merged."""
from __future__ import annotations

import math
import os
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from captioner.decoding.candidate import Candidate
from captioner.errors import CaptionerError, ConfigError
from captioner.tags.tag import Tag
from captioner.video.types import VideoError

#: frames near the middle of a segment among which the sharpest is captioned
CANDIDATE_FRAMES = 5
#: segments captioned together (one encoder/decoder batch)
CAPTION_BATCH = 16


@dataclass
class Segment:
    """A stretch of video (seconds from its start) and the captions of the frame chosen for it."""

    start: float
    end: float
    candidates: list[Candidate] = field(default_factory=list)
    frame_time: float | None = None  # when the captioned frame is shown
    #: the captioned frame (upright RGB, at most `frame_size` pixels), only when `caption_video` is asked for it
    frame: Image.Image | None = field(default=None, repr=False, compare=False)
    tags: list[Tag] = field(default_factory=list)  # the captioned frame's object tags
    confidence: float | None = None  # the best caption's calibrated confidence (None: no calibration)
    warnings: list[str] = field(default_factory=list)  # the captioned frame's input warnings

    @property
    def caption(self) -> str | None:
        return self.candidates[0].caption if self.candidates else None

    def to_dict(self, video: str, with_attention: bool = False) -> dict:
        return {"video": video, "start": round(self.start, 3), "end": round(self.end, 3), "caption": self.caption,
                "candidates": [c.to_dict(with_attention) for c in self.candidates], "error": None,
                "tags": [t.to_dict() for t in self.tags],
                "confidence": None if self.confidence is None else round(float(self.confidence), 4),
                "warnings": list(self.warnings)}


@dataclass
class VideoResult:
    """The segments of one video, in order, or the reason it could not be captioned."""

    video: str
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None
    duration: float | None = None
    cuts: list[float] = field(default_factory=list)  # detected shot changes (seconds)

    def records(self, with_attention: bool = False) -> list[dict]:
        """One JSON-able dict per segment (`video`, `start`, `end`, `caption`, `candidates`, `error`, and
        `segment` / `segments`: its number and the video's count, so a resumed output file can tell a
        video whose records were cut off), or one record with the error."""
        if self.error is not None:
            return [{"video": self.video, "start": None, "end": None, "caption": None, "candidates": [],
                     "error": self.error}]
        n = len(self.segments)
        return [{**s.to_dict(self.video, with_attention), "segment": i, "segments": n}
                for i, s in enumerate(self.segments)]


@dataclass
class _Planned:
    start: float
    end: float
    frame: int  # index of the frame to caption


def check_max_shot(max_shot) -> float:
    if isinstance(max_shot, bool) or not isinstance(max_shot, (int, float)) or not math.isfinite(max_shot) \
            or max_shot <= 0:
        raise ConfigError(f"the longest shot (--max-shot) must be a number of seconds above 0, not {max_shot!r}")
    return float(max_shot)


def plan(times: list[float], sharpness: list[float], cuts: list[int], end: float, max_shot: float) -> list[_Planned]:
    """Segments (shots, those longer than `max_shot` split into equal parts) and the frame to caption
    in each: the sharpest of the `CANDIDATE_FRAMES` frames nearest its middle."""
    bounds = [0, *cuts, len(times)]
    out: list[_Planned] = []
    for first, stop in zip(bounds, bounds[1:]):
        if stop <= first:
            continue
        start = 0.0 if first == 0 else times[first]
        shot_end = end if stop == len(times) else times[stop]
        parts = max(1, math.ceil((shot_end - start) / max_shot - 1e-9))
        edges = [start + (shot_end - start) * k / parts for k in range(parts + 1)]
        for a, b in zip(edges, edges[1:]):
            lo, hi = bisect_left(times, a, first, stop), bisect_left(times, b, first, stop)
            inside = range(lo, hi) if hi > lo else range(first, stop)
            middle = (a + b) / 2
            centre = bisect_left(times, middle, inside.start, inside.stop)
            window = range(max(inside.start, centre - CANDIDATE_FRAMES), min(inside.stop, centre + CANDIDATE_FRAMES))
            near = sorted(window, key=lambda i: abs(times[i] - middle))[:CANDIDATE_FRAMES]
            best = max(near, key=lambda i: (sharpness[i], -abs(times[i] - middle)))
            out.append(_Planned(a, b, best))
    return out


def merge(segments: list[Segment]) -> list[Segment]:
    """Consecutive segments with the same caption become one (the first one's candidates and frame)."""
    out: list[Segment] = []
    for s in segments:
        if out and s.caption is not None and s.caption == out[-1].caption:
            out[-1].end = s.end
        else:
            out.append(s)
    return out


def caption_video(captioner, path: str | os.PathLike, decoding, max_shot: float = 10.0,
                  name: str | None = None, progress: Callable[[str, float, float | None], None] | None = None,
                  frame_size: int | None = None) -> VideoResult:
    """See `Captioner.caption_video`. Errors in the file end up in `VideoResult.error`, never raised.

    `progress(stage, done, total)`, if given, is called as the work goes on: ``("scan", seconds decoded,
    expected seconds or None)`` during the detection pass, ``("frames", 0, segments)`` before the frames to
    caption are decoded, and ``("caption", segments captioned, segments)`` after each batch (counts before
    equal neighbours are merged). With `frame_size`, every segment keeps its captioned frame in
    `Segment.frame`, upright RGB scaled down to at most `frame_size` pixels a side."""
    from captioner.inputs.sources import InputItem
    from captioner.video.decode import grab
    from captioner.video.shots import cut_times, detect_shots

    max_shot = check_max_shot(max_shot)
    name = name or str(path)
    try:
        report = progress or (lambda stage, done, total: None)
        scanned = detect_shots(path, name=name, progress=lambda t, total: report("scan", t, total))
        planned = plan(scanned.times, scanned.sharpness, scanned.cuts, scanned.end, max_shot)
        report("frames", 0, len(planned))
        kept: dict[int, Image.Image] = {}

        def prepare(img):
            prepared = captioner.prepare(InputItem(name, img))
            if frame_size:
                small = img.convert("RGB")
                small.thumbnail((frame_size, frame_size), Image.Resampling.BILINEAR)
                kept[id(prepared)] = small
            return prepared

        frames = grab(path, [p.frame for p in planned], scanned, name=name, convert=prepare)
        prepared = [frames[p.frame] for p in planned]
        bad = next((p for p in prepared if p.error is not None), None)
        if bad is not None:
            raise VideoError(bad.error)
        results = []
        for s in range(0, len(prepared), CAPTION_BATCH):
            results.extend(captioner.caption_prepared(prepared[s : s + CAPTION_BATCH], decoding))
            report("caption", len(results), len(prepared))
        segments = [Segment(p.start, p.end, r.candidates, scanned.times[p.frame], kept.get(id(q)), r.tags,
                            r.confidence, r.warnings)
                    for p, q, r in zip(planned, prepared, results)]
        return VideoResult(name, merge(segments), None, scanned.end, cut_times(scanned))
    except CaptionerError as exc:
        return VideoResult(name, error=str(exc))
    except MemoryError:
        raise
    except Exception as exc:  # never let one odd file stop the others
        return VideoResult(name, error=f"{name}: could not be read ({type(exc).__name__}: {exc})")
