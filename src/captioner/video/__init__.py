"""Video captioning: shots found with PySceneDetect on small frames decoded by PyAV, one caption per
shot (long shots split), timed segments out as text, JSON Lines, WebVTT or SRT.

`Captioner.caption_video(path)` is the entry point; the modules here do the work:
`decode` (opening, checks, the detection pass, seeking to the frames to caption, rotation),
`shots` (cuts from the PySceneDetect content detector), `segments` (splitting, choosing frames,
merging) and `subtitles` (timestamps, .vtt/.srt written atomically).
"""
from __future__ import annotations

from captioner.video.segments import Segment, VideoResult
from captioner.video.types import VIDEO_EXTENSIONS, VideoError, is_video_path

__all__ = ["VIDEO_EXTENSIONS", "Segment", "VideoError", "VideoResult", "is_video_path"]
