"""A synthetic captioning task: two coloured shapes, one above the other, and a caption saying so."""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 230)}
SHAPES = ("circle", "square", "triangle")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box, colour) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def make_example(rng: random.Random, size: int = 128):
    (c1, c2), (s1, s2) = rng.sample(list(COLOURS), 2), (rng.choice(SHAPES), rng.choice(SHAPES))
    img = Image.new("RGB", (size, size), (245, 245, 245))
    d = ImageDraw.Draw(img)
    half = size // 2
    for (colour, shape, top) in ((c1, s1, 0), (c2, s2, half)):
        w = rng.randint(int(size * 0.28), int(size * 0.4))
        x = rng.randint(2, size - w - 2)
        y = top + rng.randint(2, half - w - 2) if half - w - 2 > 2 else top + 2
        draw_shape(d, shape, (x, y, x + w, y + w), COLOURS[colour])
    return img, f"a {c1} {s1} above a {c2} {s2}"


def write_flickr_style(root: Path, n_train: int, n_val: int, n_test: int, seed: int = 0, size: int = 128) -> dict:
    """Write images + Flickr8k-style token and split files; returns {image id: caption}."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    captions, splits = {}, {"train": [], "dev": [], "test": []}
    for split, n in (("train", n_train), ("dev", n_val), ("test", n_test)):
        for k in range(n):
            img, cap = make_example(rng, size)
            name = f"{split}_{k:04d}.jpg"
            img.save(root / "images" / name, quality=95)
            captions[name] = cap
            splits[split].append(name)
    with open(root / "Flickr8k.token.txt", "w") as f:
        for name, cap in captions.items():
            for r in range(2):
                f.write(f"{name}#{r}\t{cap} .\n")
    for split, fn in (("train", "Flickr_8k.trainImages.txt"), ("dev", "Flickr_8k.devImages.txt"), ("test", "Flickr_8k.testImages.txt")):
        (root / fn).write_text("\n".join(splits[split]) + "\n")
    return captions
