"""How far a caption can be trusted: warnings about degenerate inputs (`checks`), and one calibrated
confidence per caption from the model's own scores (`calibration`)."""
from __future__ import annotations

from captioner.confidence.checks import image_warnings

__all__ = ["image_warnings"]
