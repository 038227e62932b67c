"""Input sources: turn what the user gives (file paths, folders, bytes, PIL images, named items)
into named `InputItem`s for the pipeline. Later sources (video frames) produce the same items."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from captioner.inputs.images import IMAGE_EXTENSIONS


def expand_inputs(paths: Iterable[str], extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Files as given; folders searched recursively for files with these extensions (default: common
    image extensions), sorted."""
    wanted = set(extensions)
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in wanted)
        else:
            out.append(str(p))
    return out


@dataclass(frozen=True)
class InputItem:
    """One thing to caption: `source` is a path, encoded image bytes or a PIL image; `name` labels
    its result (the path as given, the PIL image's file name, or `image-N` for in-memory data)."""

    name: str
    source: Any


def as_item(source: Any, n: int = 1, name: str | None = None) -> InputItem:
    """One source as a named item (no folder expansion): `name`, else the path as given, the PIL
    image's file name, or `image-N` for in-memory data."""
    if isinstance(source, InputItem):
        return source
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str):
        return InputItem(*source)
    if name:
        return InputItem(name, source)
    if isinstance(source, (str, os.PathLike)):
        return InputItem(str(source), source)
    if isinstance(source, Image.Image):
        return InputItem(Path(getattr(source, "filename", "") or "").name or f"image-{n}", source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return InputItem(f"image-{n}", bytes(source))
    return InputItem(f"item-{n}", source)  # the pipeline reports the unsupported type


def as_items(sources: Iterable) -> list[InputItem]:
    """Named items, in order (see `as_item`); folders are expanded like `expand_inputs`."""
    items: list[InputItem] = []
    for n, source in enumerate(sources, 1):
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            items.extend(InputItem(p, p) for p in expand_inputs([str(source)]))
        else:
            items.append(as_item(source, n))
    return items
