"""The studio's browser code and styles: files in ``static/`` (package data), read once."""
from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def asset(name: str) -> str:
    """The text of ``static/<name>`` (e.g. ``gallery_modal.js``)."""
    return resources.files("captioner.studio").joinpath("static", name).read_text(encoding="utf-8")
