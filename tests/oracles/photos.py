"""Photos for tests and benchmarks, made on the fly (no licensed pictures in the repository),
and the Flickr8k test photos when the data set is present ($CAPTIONER_DATA, else beside the repository)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
#: the Flickr8k folder the tests and benchmarks read: $CAPTIONER_DATA, else ../shared/data/flickr8k beside this
#: checkout (the development layout; the package itself knows no such folder)
FLICKR = Path(os.environ.get("CAPTIONER_DATA") or ROOT.parent / "shared" / "data" / "flickr8k")


def make_photo(path: Path, width: int, height: int, seed: int, quality: int = 90) -> Path:
    """A photo-like JPEG: smooth colour field, a few shapes, sensor-like noise."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 10, width // 2)), int(rng.integers(height // 10, height // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
    arr = np.asarray(base, dtype=np.int16) + rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=quality)
    return path


def real_photos(n: int, image_dir: Path | None = None) -> list[Path]:
    """The first `n` Flickr8k test photos (then other Flickr8k photos), or [] when absent."""
    image_dir = image_dir or FLICKR / "images"
    if not image_dir.is_dir():
        return []
    split = FLICKR / "Flickr_8k.testImages.txt"
    names = [line.strip() for line in split.read_text().splitlines() if line.strip()] if split.is_file() else []
    paths = [image_dir / nm for nm in names if (image_dir / nm).is_file()]
    if len(paths) < n:
        seen = set(paths)
        paths += [p for p in sorted(image_dir.glob("*.jpg")) if p not in seen][: n - len(paths)]
    return paths[:n]


def synthetic_photos(n: int, folder: Path) -> list[Path]:
    """`n` generated JPEGs of mixed sizes: 640x480 and 1024x768, every 10th 4000x3000."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        w, h = (4000, 3000) if i % 10 == 9 else ((640, 480) if i % 2 == 0 else (1024, 768))
        out.append(make_photo(folder / f"synthetic_{i:04d}_{w}x{h}.jpg", w, h, seed=1000 + i))
    return out


def mandelbrot_photo(path: Path, size: tuple[int, int] = (640, 480), quality: int = 90) -> Path:
    """A 640x480 JPEG of the Mandelbrot set (detailed, deterministic)."""
    img = Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 80).convert("RGB")
    img.save(path, quality=quality)
    return path


def noise_photo_bytes(seed: int, size: tuple[int, int] = (640, 480), quality: int = 85) -> bytes:
    """A photo-sized JPEG (noise blended with a gradient, rotated), different bytes per seed."""
    noise = Image.effect_noise(size, 30 + seed % 20).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    buf = io.BytesIO()
    Image.blend(noise, gradient, 0.5).rotate(seed % 360).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def tiny_png_bytes(size: tuple[int, int] = (4, 4), colour: tuple[int, int, int] = (90, 90, 90)) -> bytes:
    """A tiny plain PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def scene_photos(folder: Path, n: int = 3) -> list[Path]:
    """Simple generated scenes (sky, field, a coloured ball), 480x360 JPEGs photo1.jpg, photo2.jpg, ...:
    something for screenshots that shows no Flickr8k photo (their licence keeps them out of the repository)."""
    colours = [(200, 40, 40), (240, 200, 40), (50, 80, 200)]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = Image.new("RGB", (480, 360), (135, 190, 235))
        img.paste((60, 150, 60), (0, 200, 480, 360))
        ImageDraw.Draw(img).ellipse((150 + 40 * i, 210, 230 + 40 * i, 290), fill=colours[i % len(colours)])
        path = folder / f"photo{i + 1}.jpg"
        img.save(path, quality=90)
        out.append(path)
    return out
