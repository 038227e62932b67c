"""Reading videos with PyAV: checks with one-line errors, the detection pass at reduced resolution
(times from frame timestamps, never frame index / fps), seeking to the frames to caption, and the
rotation of phone videos (display matrix).

Every failure becomes a `VideoError` whose message names the file and the reason.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from captioner.inputs.images import check_image_path
from captioner.video.types import VideoError

#: width of the frames shot detection and sharpness work on (the height keeps the aspect ratio)
DETECT_WIDTH = 256
#: when the next frame to caption is at most this many seconds ahead, decode on rather than seek
SEEK_AFTER = 2.0
#: frames between two calls of the detection pass's progress callback
PROGRESS_EVERY = 25
#: frames larger than this are refused, as photos are (about 8K x 8K)
MAX_PIXELS = 70_000_000
#: container formats FFmpeg reads that hold a still picture, not a video
_IMAGE_FORMATS = ("image2", "_pipe", "mjpeg", "apng", "webp", "bmp", "tiff")


def _av():
    try:
        import av  # imported on first use: photos never need it
    except ImportError:
        raise VideoError("captioning videos needs PyAV: pip install av scenedetect") from None
    return av


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.rstrip(".").replace("\n", " ")


@dataclass
class Scan:
    """What the detection pass learnt about a video: one entry per decoded frame."""

    times: list[float] = field(default_factory=list)  # seconds from the start of the video
    pts: list[int | None] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)  # variance of the Laplacian, small frame
    cuts: list[int] = field(default_factory=list)  # frame indexes where a new shot starts
    end: float = 0.0  # end time of the last frame
    rotation: int = 0  # counter-clockwise degrees to turn the picture upright
    size: tuple[int, int] = (0, 0)  # stored width, height


def rotation_of(frame=None, stream=None) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) the display matrix asks for: from the frame's side
    data (FFmpeg copies the stream's to every frame), else the stream's legacy `rotate` tag
    (clockwise degrees)."""
    degrees = None
    if frame is not None:
        try:
            degrees = frame.rotation
        except Exception:
            degrees = None
    if not degrees and stream is not None:
        tag = (stream.metadata or {}).get("rotate")
        try:
            degrees = -int(float(tag)) if tag not in (None, "") else None
        except ValueError:
            degrees = None
    return int(round((degrees or 0) / 90.0)) * 90 % 360


def upright(img: Image.Image, rotation: int) -> Image.Image:
    """Turn a decoded picture by `rotation` counter-clockwise degrees (a multiple of 90), as a player does."""
    rotation %= 360
    if rotation == 90:
        return img.transpose(Image.Transpose.ROTATE_90)
    if rotation == 180:
        return img.transpose(Image.Transpose.ROTATE_180)
    if rotation == 270:
        return img.transpose(Image.Transpose.ROTATE_270)
    return img


def open_video(path: str | os.PathLike, name: str | None = None):
    """Open `path` and return (container, video stream), or raise `VideoError` with the reason."""
    av = _av()
    name = name or str(path)
    check_image_path(Path(path), name)  # missing, folder, empty, FIFO, permission: the photo messages
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"{name}: not a readable video file: corrupt, truncated or not a video "
                         f"({_reason(exc)})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{name}: cannot be read ({_reason(exc)})") from None
    try:
        fmt = container.format.name or ""
        if any(f in fmt for f in _IMAGE_FORMATS) and fmt != "gif":
            raise VideoError(f"{name}: not a video but a still picture ({fmt}); caption it as a photo")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            what = "an audio-only file" if kinds == ["audio"] else \
                f"streams: {', '.join(kinds)}" if kinds else "the file holds no frames at all"
            raise VideoError(f"{name}: no video stream ({what})")
        stream = container.streams.video[0]
        if stream.codec_context is None or not stream.codec_context.width:
            raise VideoError(f"{name}: the video stream cannot be decoded (unknown codec or no picture size)")
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > MAX_PIXELS:
            raise VideoError(f"{name}: the frames are {w}x{h} pixels, more than this tool decodes")
        stream.thread_type = "AUTO"
        return container, stream
    except BaseException:
        container.close()
        raise


def _laplacian_variance(gray: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def scan(path: str | os.PathLike, on_frame: Callable[[int, np.ndarray], list[int]] | None = None,
         name: str | None = None, width: int = DETECT_WIDTH,
         progress: Callable[[float, float | None], None] | None = None) -> Scan:
    """Decode every frame once, at `width` pixels wide: times from the timestamps, sharpness, and
    `on_frame(index, bgr)` (the shot detector), which returns the indexes of cuts it found.
    `progress(seconds decoded, expected duration or None)` is called every `PROGRESS_EVERY` frames."""
    import cv2

    av = _av()
    name = name or str(path)
    container, stream = open_video(path, name)
    out = Scan()
    try:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        step = 1.0 / float(rate) if rate else 1.0 / 25.0
        if hasattr(on_frame, "start"):
            on_frame.start(1.0 / step)
        w0, h0 = stream.codec_context.width, stream.codec_context.height
        w = min(width, w0) // 2 * 2 or 2
        h = max(2, round(h0 * w / w0) // 2 * 2)
        expected = _expected_duration(container, stream) if progress is not None else None
        base = None  # the video's start: the container's start time, else the first frame's
        last = None
        last_duration = None
        try:
            for n, frame in enumerate(container.decode(stream)):
                t = frame.time
                t = float(t) if t is not None else (last + step if last is not None else 0.0)
                if last is not None and t <= last:  # a broken or repeated timestamp: keep time moving
                    t = last + step / 100
                last = t
                if base is None:
                    start = container.start_time
                    base = min(t, start / 1_000_000) if start is not None else t
                    out.rotation = rotation_of(frame, stream)
                    out.size = (frame.width, frame.height)
                bgr = frame.to_ndarray(width=w, height=h, format="bgr24", interpolation="FAST_BILINEAR")
                out.times.append(t - base)
                out.pts.append(frame.pts)
                out.sharpness.append(_laplacian_variance(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)))
                if frame.duration and frame.time_base:
                    last_duration = float(frame.duration * frame.time_base)
                if on_frame is not None:
                    out.cuts.extend(on_frame(n, bgr))
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(out.times[-1], expected)
        except av.FFmpegError as exc:
            where = f" at {out.times[-1]:.1f} s" if out.times else ""
            raise VideoError(f"{name}: corrupt video data{where} ({_reason(exc)})") from None
        if not out.times:
            raise VideoError(f"{name}: the video has no frames")
        if len(out.times) > 1:
            diffs = np.diff(np.asarray(out.times[-9:]))
            diffs = diffs[diffs > 0]
            step = float(np.median(diffs)) if len(diffs) else step
        out.end = out.times[-1] + (last_duration if last_duration and last_duration > 0 else step)
        _check_complete(container, stream, out, name)
        return out
    finally:
        container.close()


def _expected_duration(container, stream) -> float | None:
    """How long the header says the video is (seconds), if it says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000
    return None


def _check_complete(container, stream, out: Scan, name: str) -> None:
    """A file cut short (a copy interrupted) often still opens: its header says how long it is."""
    expected = _expected_duration(container, stream)
    if expected and out.end < expected - max(1.0, 0.05 * expected):
        raise VideoError(f"{name}: the file is truncated (its frames stop at {out.end:.1f} s of {expected:.1f} s)")


def grab(path: str | os.PathLike, wanted: Iterable[int], scanned: Scan, name: str | None = None,
         convert: Callable[[Image.Image], object] | None = None) -> dict[int, object]:
    """The frames at the given indexes of a scanned video, full size and upright (then passed
    through `convert`): seeks to each by its timestamp and decodes only from the keyframe before it
    (decoding on when the next one is close); falls back to one pass counting frames when the
    video has no usable timestamps or a seek lands in the wrong place."""
    av = _av()
    name = name or str(path)
    convert = convert or (lambda img: img)
    wanted = sorted(set(wanted))
    got: dict[int, object] = {}

    def keep(i: int, frame) -> None:
        got[i] = convert(upright(frame.to_image(), scanned.rotation))

    pts_ok = all(scanned.pts[i] is not None for i in wanted) and len(set(scanned.pts)) == len(scanned.pts)
    container, stream = open_video(path, name)
    try:
        if pts_ok:
            frames = None
            last_time = None
            for i in wanted:
                target = scanned.pts[i]
                if frames is None or last_time is None or scanned.times[i] < last_time \
                        or scanned.times[i] - last_time > SEEK_AFTER:
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                    frames = container.decode(stream)
                    first = True
                found = False
                for frame in frames:
                    if frame.pts is None or (first and frame.pts > target):
                        break  # no timestamps or the seek went past: count frames instead
                    first = False
                    last_time = scanned.times[i]
                    if frame.pts == target:
                        keep(i, frame)
                        found = True
                        break
                    if frame.pts > target:
                        break
                if not found:
                    frames = None
                    break
        missing = [i for i in wanted if i not in got]
        if missing:
            container.close()
            container, stream = open_video(path, name)
            todo = set(missing)
            for n, frame in enumerate(container.decode(stream)):
                if n in todo:
                    keep(n, frame)
                    todo.discard(n)
                    if not todo:
                        break
            if todo:
                raise VideoError(f"{name}: the video changed while it was read (frames missing on the second pass)")
    except av.FFmpegError as exc:
        raise VideoError(f"{name}: corrupt video data ({_reason(exc)})") from None
    finally:
        container.close()
    return got
