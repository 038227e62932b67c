"""Warnings about inputs a caption cannot be trusted for: tiny, blank, extremely elongated images,
and (cheap guesses) screenshots or pictures of text. The pixel checks look at the decoded photo
once, on a small thumbnail (a few ms); `tag_warnings` adds the classifier's view (its website /
crossword / menu / book-cover classes). Known misses: a scanned page of text in grey (no flat
background, no such class) is not flagged; a silhouette or a flat logo is flagged like a screenshot."""
from __future__ import annotations

import numpy as np
from PIL import Image

#: an image with a side below this many pixels is "tiny"
MIN_SIDE = 32
#: long side / short side above this is an "extreme aspect ratio" (a 20000 x 100 panorama is 200)
MAX_ASPECT = 5.0
#: a thumbnail whose pixel values vary less than this (standard deviation, 0..255) is "blank"
FLAT_STD = 4.0


def _thumbnail(img: Image.Image, side: int = 256) -> np.ndarray:
    """Nearest-neighbour thumbnail: keeps exact colours and hard edges (a screenshot's tells)."""
    small = img.convert("RGB") if img.mode != "RGB" else img
    if max(small.size) > side:
        scale = side / max(small.size)
        small = small.resize((max(1, round(small.width * scale)), max(1, round(small.height * scale))),
                             Image.Resampling.NEAREST)
    return np.asarray(small, dtype=np.int16)


def looks_like_screenshot(pixels: np.ndarray) -> bool:
    """Screenshots and drawings: a quarter or more of the pixels exactly one colour (a background),
    few distinct colours among the others (under 0.15 per pixel; photos, even with a clipped sky,
    have 0.4 or more), and hard edges (glyphs, widgets). On 106 coco-dev and 3,000 Flickr8k photos
    it flags none."""
    h, w, _ = pixels.shape
    if h < 16 or w < 16:
        return False
    flat = pixels[::2, ::2].reshape(-1, 3).astype(np.int32)  # colour statistics on every other pixel
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    packed.sort()
    starts = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1], True])
    runs = np.diff(starts)  # how many pixels share each colour
    top_share = runs.max() / len(flat)  # the background colour's share
    rest = len(flat) - runs.max()
    if top_share <= 0.25 or (len(runs) - 1) / max(rest, 1) >= 0.15:
        # photos: no flat background, or (a clipped white sky, a black night) many colours beside it
        return False
    grey = pixels.sum(axis=2, dtype=np.int32) / 3.0
    dx, dy = np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0))
    hard = (np.count_nonzero(dx > 60) + np.count_nonzero(dy > 60)) / (dx.size + dy.size)
    return bool(hard > 0.01)


#: tag words of the ImageNet classes that are screens and printed text (website, crossword, menu, book cover)
TEXT_TAGS = ("screenshot", "text")
SCREENSHOT_WARNING = "looks like a screenshot or text: the model was trained on photos, caption unreliable"


def tag_warnings(tags: list, warnings: list[str], min_score: float = 0.5) -> list[str]:
    """A screenshot/text warning from the classifier's own view (its website, crossword, menu and book
    cover classes), when the pixels did not already give one."""
    if SCREENSHOT_WARNING in warnings:
        return []
    if sum(t.score for t in tags if t.label in TEXT_TAGS) >= min_score:
        return [SCREENSHOT_WARNING]
    return []


def image_warnings(img: Image.Image, size: tuple[int, int] | None = None) -> list[str]:
    """Plain-language warnings for one decoded image (`size`: its original (width, height), when the
    image was decoded smaller). Empty for an ordinary photo."""
    w, h = size or img.size
    out = []
    if min(w, h) < MIN_SIDE:
        out.append(f"tiny image ({w}x{h} px): caption unreliable")
    if min(w, h) > 0 and max(w, h) / min(w, h) > MAX_ASPECT:
        out.append(f"extreme aspect ratio ({w}x{h} px, {max(w, h) / min(w, h):.0f}:1): the photo is squashed "
                   "to a square, caption unreliable")
    pixels = _thumbnail(img)
    if pixels.size and float(pixels.std()) < FLAT_STD:
        out.append("blank image (almost one colour): caption unreliable")
    elif min(w, h) >= MIN_SIDE and looks_like_screenshot(pixels):
        out.append(SCREENSHOT_WARNING)
    return out
