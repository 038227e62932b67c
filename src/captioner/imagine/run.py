"""Images from captions: generate images for a prompt, caption each back, say how well it matches, save them."""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from captioner.imagine.config import ImagineConfig
from captioner.imagine.matching import PromptMatch, match_prompt
from captioner.imagine.t2i import ImagineError, TextToImage


@dataclass
class Imagined:
    """One generated image, what the captioner says of it, and where it was saved (None: not saved)."""

    prompt: str
    seed: int
    image: object  # PIL.Image.Image
    match: PromptMatch
    path: Path | None = None

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "seed": self.seed, "file": None if self.path is None else str(self.path),
                "width": self.image.width, "height": self.image.height, **self.match.to_dict()}


def imagine(prompt: str, t2i: TextToImage, captioner, config: ImagineConfig = ImagineConfig(),
            progress: Callable[[int, int], None] | None = None) -> list[Imagined]:
    """Generate `config.n` images for `prompt` and caption each back (captions and prompt likelihoods)."""
    images = t2i.generate(prompt, config, progress)
    results = list(captioner.caption_many(images))
    return [Imagined(prompt, config.seed + i, image, match_prompt(captioner, image, result, prompt))
            for i, (image, result) in enumerate(zip(images, results))]


def slug(text: str, max_len: int = 40) -> str:
    """A file-name-safe short form of the prompt: "A dog, running!" -> "a-dog-running"."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = "-".join(words)[:max_len].strip("-")
    return out or "image"


def save_imagined(items: list[Imagined], folder: str | os.PathLike) -> list[Path]:
    """Save each image as PNG in `folder` (created), never overwriting a file: ``a-dog-running-s0.png``
    (``-2``, ``-3`` ... when taken). The prompt is written into the PNG's XMP dc:description."""
    import io

    from captioner.metadata import MetadataError, photo_with_caption

    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ImagineError(f"--out {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImagineError(f"--out {folder}: the folder could not be made ({exc.strerror or exc})") from None
    paths = []
    for item in items:
        buf = io.BytesIO()
        item.image.save(buf, "PNG")
        data = buf.getvalue()
        try:
            data = photo_with_caption(data, item.prompt, name="the generated image")
        except MetadataError:
            pass  # the image is still worth saving without its description
        stem, n = f"{slug(item.prompt)}-s{item.seed}", 1
        while True:
            path = folder / (f"{stem}.png" if n == 1 else f"{stem}-{n}.png")
            try:
                with open(path, "xb") as fh:  # x: never overwrite
                    fh.write(data)
                break
            except FileExistsError:
                n += 1
            except OSError as exc:
                raise ImagineError(f"{path}: could not be written ({exc.strerror or exc})") from None
        item.path = path
        paths.append(path)
    return paths
