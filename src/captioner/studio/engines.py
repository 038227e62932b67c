"""What captions in the studio. Photos (the Caption tab), the gallery's search by meaning and "more like this",
and folder imports all use the studio's captioner: the model it started with, or the learned one the Models tab
switched to, each loaded on the runtime chosen at start (`captioner.runtime.choice.load_captioner`: the
torch-free `LeanCaptioner` by default, so the studio starts and captions without importing PyTorch). What only
PyTorch does loads PyTorch's twin of the same model folder when first asked (`torch_twin`): the Imagine
tab's prompt likelihood, and videos where the captioner cannot caption them itself (`video_engine`).
Importing this module imports neither torch nor Gradio.
"""
from __future__ import annotations

import logging
import os
import threading

from captioner.runtime.choice import is_lean, load_captioner

log = logging.getLogger("captioner.studio")


def _needs(lean) -> str | None:
    """What in the model's own decoding only PyTorch does (the studio changes only the beam and the length)."""
    from captioner.runtime.lean import needs_torch

    return needs_torch(lean.decoding)


def describe(captioner) -> str:
    """The runtime `captioner` runs on, for the log."""
    if is_lean(captioner):
        return "ONNX Runtime and numpy (no PyTorch)"
    return f"PyTorch on {getattr(captioner, 'device', 'cpu')}"


_twin: tuple[object, object] | None = None  # (a torch-free captioner, its PyTorch twin): one kept at a time
_twin_lock = threading.Lock()


def torch_twin(captioner):
    """`captioner` itself when it runs on PyTorch, else the PyTorch `Captioner` of its model folder (loaded on
    first use, which imports torch; one kept at a time)."""
    global _twin
    if not is_lean(captioner):
        return captioner
    with _twin_lock:
        if _twin is None or _twin[0] is not captioner:
            from captioner.pipeline import Captioner

            _twin = None  # the previous twin goes before the next one loads
            log.info("studio: loading %s on PyTorch (first use of what only PyTorch does)", captioner.name)
            _twin = (captioner, Captioner.from_pretrained(captioner.folder))
        return _twin[1]


def video_engine(captioner):
    """What captions a video: `captioner` where it can (`caption_video`), else its PyTorch twin."""
    return captioner if callable(getattr(captioner, "caption_video", None)) else torch_twin(captioner)


class Engines:
    """The studio's runtime (`runtime`: "onnx" or "torch"; `device`): what learned models load on."""

    def __init__(self, runtime: str = "onnx", device: str = "cpu"):
        self.runtime, self.device = runtime, str(device)

    @classmethod
    def like(cls, captioner) -> Engines:
        """The runtime `captioner` runs on (a captioner loaded by the caller, e.g. a test's)."""
        if is_lean(captioner):
            return cls("onnx", "cpu")
        return cls("torch", str(getattr(captioner, "device", "cpu")))

    def load(self, folder: str | os.PathLike | None):
        """Model folder `folder`'s captioner on the studio's runtime (torch-free where the folder carries its ONNX
        runtime and its decoding needs nothing only PyTorch does)."""
        captioner = load_captioner(folder, runtime=self.runtime, device=self.device, needs=_needs)
        log.info("studio: %s captions with %s", captioner.name, describe(captioner))
        return captioner
