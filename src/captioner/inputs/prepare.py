"""One input opened and preprocessed for the encoder, or why it could not be: the step both runtimes share
(`captioner.pipeline.Captioner.prepare` makes torch tensors, `captioner.runtime.lean.LeanCaptioner.prepare`
numpy arrays). Errors are captured, never raised, so one odd file never stops a batch."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from captioner.confidence.checks import image_warnings
from captioner.errors import CaptionerError, ConfigError
from captioner.inputs.images import open_image, original_size, resize_square
from captioner.inputs.sources import as_item, as_items


@dataclass
class Prepared:
    """One input: its (3, S, S) pixels (a torch tensor or a numpy array, as the runtime asked), its original
    size and warnings, or its `error`."""

    name: str
    pixels: Any = None
    size: tuple[int, int] | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def prepare(item, input_size: int, to_pixels: Callable) -> Prepared:
    """Open `item` (an `InputItem` or a bare source: path, bytes or PIL image), square it to `input_size` and
    turn it into pixels with `to_pixels(image)`."""
    from PIL import Image

    item = as_item(item)
    label, source = item.name, item.source
    try:
        if isinstance(source, Image.Image):
            img = source.convert("RGB")
        elif isinstance(source, (str, os.PathLike, bytes)):
            img = open_image(source, draft_size=input_size)
        else:
            return Prepared(label, error=f"{label}: cannot caption a {type(source).__name__} "
                                         "(give a file path, image bytes or a PIL image)")
        size = original_size(img)
        warnings = image_warnings(img, size)
        return Prepared(label, to_pixels(resize_square(img, input_size)), size, warnings=warnings)
    except CaptionerError as exc:
        return Prepared(label, error=str(exc))
    except Exception as exc:  # never let one odd file stop a batch
        return Prepared(label, error=f"{label}: could not be read ({type(exc).__name__}: {exc})")


def prepared_batches(sources: Iterable, prepare_one: Callable, batch_size: int, workers: int) -> Iterator[list[Prepared]]:
    """`sources` (paths, folders, bytes, PIL images, `InputItem`s) as lists of `prepare_one(item)`, in order, in
    batches of `batch_size`; the next batch is read in `workers` threads while the caller works on this one.
    A finished batch is dropped at once, so memory stays flat over a long folder."""
    from concurrent.futures import ThreadPoolExecutor

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a whole number of at least 1, not {batch_size!r}")
    items = as_items(sources)
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

    def prepare_batch(batch):
        return [prepare_one(item) for item in batch]

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(prepare_batch, batches[0])] if batches else []
        for n in range(len(batches)):
            if n + 1 < len(batches):
                futures.append(pool.submit(prepare_batch, batches[n + 1]))
            prepared, futures[n] = futures[n].result(), None
            yield prepared
