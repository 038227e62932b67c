"""Shot boundaries with PySceneDetect's content detector (HSV difference between consecutive frames,
with its minimum shot length), fed the small frames of the detection pass.

The frames are numbered as decoded; times come from their timestamps (`decode.Scan.times`), so a
variable frame rate does not move the cuts.
"""
from __future__ import annotations

import os

from captioner.video.decode import DETECT_WIDTH, Scan, scan

#: PySceneDetect's default: mean HSV change (0-255) between two frames that counts as a cut
THRESHOLD = 27.0
#: no two cuts closer than this (seconds); flashes shorter than it are merged
MIN_SHOT = 0.6


def _content_detector_class():
    """PySceneDetect's `ContentDetector`, its frame score measuring hue differences around the colour
    circle: OpenCV hue runs 0-179 and wraps, so a red picture whose hue drifts from 1 to 179 (a fade that
    begins, or noise in a red sky) scored as a change of 178 and gave a false cut. Everything else (the
    weights, the threshold, the minimum shot length and flash filter) is the library's; the edge
    component, off by default, is not computed."""
    import cv2
    from scenedetect import ContentDetector

    class CircularHueContentDetector(ContentDetector):
        _previous = None

        def _calculate_frame_score(self, timecode, frame_img) -> float:
            hue, sat, lum = cv2.split(cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV))
            previous, self._previous = self._previous, (hue, sat, lum)
            if previous is None:
                return 0.0
            dhue = cv2.absdiff(hue, previous[0])
            dhue = cv2.min(dhue, 180 - dhue)  # around the circle
            parts = (float(cv2.mean(dhue)[0]), float(cv2.mean(cv2.absdiff(sat, previous[1]))[0]),
                     float(cv2.mean(cv2.absdiff(lum, previous[2]))[0]))
            weights = tuple(self._weights)[:3]
            return sum(p * w for p, w in zip(parts, weights)) / (sum(abs(w) for w in weights) or 1.0)

    return CircularHueContentDetector


class ShotDetector:
    """`scenedetect.ContentDetector` (hue measured around the circle) behind a plain
    `(index, bgr) -> [cut indexes]` call."""

    def __init__(self, threshold: float = THRESHOLD, min_shot: float = MIN_SHOT):
        self.threshold, self.min_shot = threshold, min_shot
        self.start(25.0)

    def start(self, fps: float) -> None:
        """Called by the detection pass with the stream's average frame rate, before the first frame."""
        from scenedetect import FrameTimecode  # scenedetect >= 0.7

        detector_class = _content_detector_class()
        fps = float(fps)
        self._timecode = lambda n: FrameTimecode(n, fps=fps)
        self.detector = detector_class(threshold=self.threshold, min_scene_len=max(1, round(self.min_shot * fps)))
        self.last = 0

    def __call__(self, index: int, bgr) -> list[int]:
        self.last = index
        return [int(tc.frame_num) for tc in self.detector.process_frame(self._timecode(index), bgr)]

    def finish(self) -> list[int]:
        return [int(tc.frame_num) for tc in self.detector.post_process(self._timecode(self.last))]


def detect_shots(path: str | os.PathLike, name: str | None = None, threshold: float = THRESHOLD,
                 min_shot: float = MIN_SHOT, width: int = DETECT_WIDTH, progress=None) -> Scan:
    """One decoding pass at `width` pixels: frame times, sharpness and the cuts (frame indexes, sorted).
    `progress(seconds decoded, expected duration or None)`, if given, follows the pass (`decode.scan`)."""
    detector = ShotDetector(threshold, min_shot)
    result = scan(path, detector, name=name, width=width, progress=progress)
    cuts = set(result.cuts) | set(detector.finish())
    result.cuts = sorted(c for c in cuts if 0 < c < len(result.times))
    return result


def cut_times(scanned: Scan) -> list[float]:
    """The start times (seconds) of every shot but the first."""
    return [scanned.times[c] for c in scanned.cuts]
