"""captioner: an offline image-captioning studio (Show, Attend and Tell).

The public API::

    from captioner import Captioner, DecodingConfig, Gallery

    captioner = Captioner.from_pretrained()            # the shipped model, or from_pretrained(DIR): every file
    result = captioner.caption("dog.jpg")              # a CaptionResult: .caption, .candidates
    result = captioner.caption("dog.jpg", DecodingConfig(beam_size=3))  # beam 3, the model's other settings
    video = captioner.caption_video("trip.mp4")        # a VideoResult: .segments (start, end, caption)

Names are imported on first use, so `import captioner` stays light (no torch, no Gradio).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from captioner._lazy import lazy_exports

# Nothing leaves this computer: ONNX Runtime reads this before it starts (no usage events, no device id).
# Set here too, so it holds even when other code imports onnxruntime before captioner.runtime does.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.2.0.dev0"

_EXPORTS = {
    "captioner.pipeline": ("Captioner", "CaptionResult"),
    "captioner.decoding.candidate": ("Candidate",),
    "captioner.decoding.config": ("DecodingConfig",),
    "captioner.storage": ("Gallery",),
    "captioner.model.folder": ("load_model",),
    "captioner.errors": ("CaptionerError",),
    "captioner.video.segments": ("VideoResult",),
}

__all__ = ["Candidate", "CaptionResult", "Captioner", "CaptionerError", "DecodingConfig", "Gallery", "VideoResult",
           "load_model", "__version__"]

if TYPE_CHECKING:
    from captioner.decoding.candidate import Candidate
    from captioner.decoding.config import DecodingConfig
    from captioner.errors import CaptionerError
    from captioner.model.folder import load_model
    from captioner.pipeline import Captioner, CaptionResult
    from captioner.storage import Gallery
    from captioner.video.segments import VideoResult


__getattr__ = lazy_exports(__name__, _EXPORTS)
