"""Attention pictures: where the model looked for each word of a caption.

No GUI code here (the studio, the CLI and scripts all use it)::

    from captioner.viz.attention import attention_frames, frames_to_gif, frames_to_strip

    result = captioner.caption("dog.jpg")
    frames = attention_frames(Image.open("dog.jpg"), result.candidates[0])   # one per word
    frames_to_gif(frames, "dog-attention.gif")                               # looping animation
    frames_to_strip(frames, columns=5).save("dog-attention.png")             # still contact sheet

Each frame is the photo scaled so that its longer side is ``size`` pixels, with the word's
attention map (an N x N grid of weights summing to 1) upsampled smoothly (bicubic) to the photo
and laid over it as a heat map ("turbo" colours scaled from the word's least to its most attended
point: red = looked at most, dark blue = least), and the word written on a dark band at the bottom.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["attention_frames", "frames_to_gif", "frames_to_strip", "candidate_words_and_maps"]

#: The "turbo" colour map sampled at 17 points (dark blue -> green -> yellow -> dark red).
_TURBO = np.array([
    (48, 18, 59), (64, 64, 162), (70, 107, 227), (66, 148, 255), (40, 188, 235), (24, 221, 194),
    (50, 242, 152), (109, 254, 98), (164, 252, 60), (205, 236, 52), (238, 207, 58), (253, 172, 52),
    (251, 126, 33), (235, 80, 14), (208, 47, 5), (169, 22, 1), (122, 4, 3)], dtype=np.float32)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_TURBO)), _TURBO[:, c])
                 for c in range(3)], axis=1).astype(np.float32)  # (256, 3)

#: How strongly the heat map covers the photo: the least-attended parts get MIN_ALPHA, the most
#: attended MAX_ALPHA; unattended parts of the photo are also dimmed a little.
MIN_ALPHA, MAX_ALPHA, DIM = 0.25, 0.6, 0.35


@lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def candidate_words_and_maps(candidate: Any) -> tuple[list[str], np.ndarray | None]:
    """(words, maps (words, N, N) float32 or None) from a `Candidate` or a candidate dict.

    Dicts are what the gallery stores: ``tokens`` (or a ``caption`` to split) and an optional
    ``attention`` nested list.
    """
    if isinstance(candidate, dict):
        words = candidate.get("tokens") or str(candidate.get("caption") or "").split()
        attention = candidate.get("attention")
    else:
        words, attention = list(candidate.tokens), candidate.attention
    if attention is None:
        return list(words), None
    if hasattr(attention, "detach"):  # torch tensor
        attention = attention.detach().cpu().float().numpy()
    maps = np.asarray(attention, dtype=np.float32)
    if maps.ndim == 2:  # (words, P) with P a square number
        side = int(round(math.sqrt(maps.shape[1])))
        maps = maps.reshape(maps.shape[0], side, side)
    if maps.ndim != 3 or maps.shape[0] == 0:
        return list(words), None
    return list(words), maps


def _fit(width: int, height: int, size: int) -> tuple[int, int]:
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def attention_frames(image: Image.Image, candidate: Any, size: int = 256) -> list[Image.Image]:
    """One RGB frame per generated word: heat map of that word's attention over the photo.

    ``image`` is a PIL image (any mode); ``candidate`` a `Candidate` or a dict with ``tokens``
    and ``attention`` (as stored in the gallery). Frames are the photo scaled so that its longer
    side is ``size`` (aspect ratio kept). Returns [] when the candidate has no attention maps.
    """
    words, maps = candidate_words_and_maps(candidate)
    if maps is None or not words:
        return []
    n = min(len(words), maps.shape[0])
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = _fit(image.width, image.height, size)
    photo = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)

    band_h = max(14, round(h * 0.14))
    font = _font(max(10, round(band_h * 0.62)))
    small = _font(max(8, round(band_h * 0.36)))
    band_alpha = 0.62

    frames = []
    for i in range(n):
        grid = np.nan_to_num(maps[i].astype(np.float32), nan=0.0)
        heat = np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC))
        lo, hi = float(heat.min()), float(heat.max())
        # Scaled per word from its least to its most attended point, as attention plots usually are.
        level = np.clip((heat - lo) / (hi - lo), 0.0, 1.0) if hi - lo > 1e-12 else np.full_like(heat, 0.5)
        colour = _LUT[(level * 255).astype(np.uint8)]
        alpha = (MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * level)[..., None]
        lit = photo * (1.0 - DIM + DIM * level[..., None])
        out = lit * (1.0 - alpha) + colour * alpha
        out[h - band_h:] *= 1.0 - band_alpha  # dark band for the word
        frame = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")

        draw = ImageDraw.Draw(frame)
        word = words[i]
        box = draw.textbbox((0, 0), word, font=font)
        tw, th = box[2] - box[0], box[3] - box[1]
        x = max(4, (w - tw) // 2 - box[0])
        y = h - band_h + (band_h - th) // 2 - box[1]
        draw.text((x, y), word, fill=(255, 255, 255), font=font)
        counter = f"{i + 1}/{n}"
        cbox = draw.textbbox((0, 0), counter, font=small)
        if tw + 2 * (cbox[2] - cbox[0]) + 24 < w:  # only where it does not touch the word
            draw.text((w - (cbox[2] - cbox[0]) - 6 - cbox[0], h - band_h + (band_h - (cbox[3] - cbox[1])) // 2 - cbox[1]),
                      counter, fill=(200, 200, 200), font=small)
        frames.append(frame)
    return frames


def frames_to_gif(frames: Sequence[Image.Image], dest: str | os.PathLike | io.BytesIO | None = None,
                  ms_per_frame: int = 800, last_frame_ms: int | None = None, colors: int = 128):
    """Write ``frames`` as a looping animated GIF to ``dest`` (a path or a binary file object).

    The last frame stays ``last_frame_ms`` (default: twice ``ms_per_frame``) so the loop's end
    is visible. Returns ``dest``; with ``dest=None`` returns the GIF as bytes.
    """
    if not frames:
        raise ValueError("no frames to write")
    # One shared palette (taken from a sample of all frames) is faster than one per frame and
    # keeps colours steady between frames.
    sample = frames_to_strip(frames[:: max(1, len(frames) // 6)], columns=6, gap=0)
    sample.thumbnail((512, 512))
    # Pure white and near-black patches, so the written words keep their exact colours.
    canvas = Image.new("RGB", (sample.width, sample.height + 16), (255, 255, 255))
    canvas.paste(sample, (0, 0))
    canvas.paste((20, 20, 20), (0, sample.height + 8, sample.width, sample.height + 16))
    palette = canvas.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    indexed = [f.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    durations = [ms_per_frame] * len(indexed)
    durations[-1] = last_frame_ms if last_frame_ms is not None else 2 * ms_per_frame
    out = io.BytesIO() if dest is None else dest
    indexed[0].save(out, format="GIF", save_all=True, append_images=indexed[1:], duration=durations,
                    loop=0, optimize=False, disposal=1)
    return out.getvalue() if dest is None else dest


def frames_to_strip(frames: Sequence[Image.Image], columns: int = 5, gap: int = 4,
                    background: tuple[int, int, int] = (24, 24, 27)) -> Image.Image:
    """A still contact sheet of ``frames``, left to right then top to bottom.

    Size: ``columns' * cell_w + (columns' - 1) * gap`` wide and ``rows * cell_h + (rows - 1) * gap``
    high, where ``columns' = min(columns, len(frames))``, ``rows = ceil(len(frames) / columns')``
    and the cell is the largest frame.
    """
    if not frames:
        raise ValueError("no frames to lay out")
    cols = max(1, min(int(columns), len(frames)))
    rows = math.ceil(len(frames) / cols)
    cw, ch = max(f.width for f in frames), max(f.height for f in frames)
    sheet = Image.new("RGB", (cols * cw + (cols - 1) * gap, rows * ch + (rows - 1) * gap), background)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        sheet.paste(f.convert("RGB"), (c * (cw + gap) + (cw - f.width) // 2, r * (ch + gap) + (ch - f.height) // 2))
    return sheet
