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

import importlib
import os
from typing import TYPE_CHECKING, Any

# Nothing leaves this computer: ONNX Runtime reads this before it starts (no usage events, no device id).
# Set here too, so it holds even when other code imports onnxruntime before captioner.runtime does.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.2.0.dev0"

_EXPORTS = {
    "Captioner": "captioner.pipeline",
    "CaptionResult": "captioner.pipeline",
    "Candidate": "captioner.decoding.candidate",
    "DecodingConfig": "captioner.decoding.config",
    "Gallery": "captioner.storage",
    "load_model": "captioner.model.folder",
    "CaptionerError": "captioner.errors",
    "VideoResult": "captioner.video.segments",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'captioner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
