"""Attention pictures: one frame per word, animated looping GIF, still strip."""
from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from captioner.decoding.search import Candidate
from captioner.viz.attention import attention_frames, frames_to_gif, frames_to_strip

WORDS = "a little girl in a pink dress is climbing the stairs into a wooden cabin".split()


def _photo(w=320, h=240) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8), "RGB")


def _candidate(n_words=6, grid=7, seed=0) -> Candidate:
    g = torch.Generator().manual_seed(seed)
    att = torch.softmax(torch.randn(n_words, grid * grid, generator=g), dim=1).reshape(n_words, grid, grid)
    words = (WORDS * 2)[:n_words]
    return Candidate(words, list(range(n_words + 1)), -5.0, att)


@pytest.mark.parametrize("n_words", [1, 6, 15])
def test_one_frame_per_word_of_the_expected_size(n_words):
    frames = attention_frames(_photo(320, 240), _candidate(n_words), size=256)
    assert len(frames) == n_words
    for f in frames:
        assert f.mode == "RGB"
        assert f.size == (256, 192)  # longer side = size, aspect ratio kept


def test_portrait_and_square_sizes():
    assert attention_frames(_photo(200, 400), _candidate(3), size=128)[0].size == (64, 128)
    assert attention_frames(_photo(50, 50), _candidate(3), size=100)[0].size == (100, 100)  # scaled up


def test_frames_differ_and_show_the_attention():
    cand = _candidate(2, grid=2)
    cand.attention[0] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # looks top-left
    cand.attention[1] = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # looks bottom-right
    grey = Image.new("RGB", (200, 200), (128, 128, 128))
    a, b = (np.asarray(f, dtype=np.float32) for f in attention_frames(grey, cand, size=200))
    # the most attended corner is drawn hot (red), the least attended cold (blue)
    assert a[5, 5, 0] > a[5, 5, 2] and a[150, 195, 2] > a[150, 195, 0]
    assert b[150, 195, 0] > b[150, 195, 2] and b[5, 5, 2] > b[5, 5, 0]


def test_word_is_written_on_a_dark_band():
    frame = np.asarray(attention_frames(Image.new("RGB", (256, 256), (250, 250, 250)), _candidate(1), size=256)[0])
    band = frame[-30:]
    assert band.mean() < 150  # darkened
    assert (band.min(axis=2) > 230).sum() > 20  # white text pixels in it


def test_accepts_gallery_dicts_and_grey_images():
    cand = _candidate(4)
    stored = {"caption": " ".join(cand.tokens), "tokens": cand.tokens, "attention": cand.attention.tolist()}
    frames = attention_frames(Image.new("L", (64, 48), 90), stored, size=64)
    assert len(frames) == 4 and frames[0].size == (64, 48)
    assert attention_frames(_photo(), {"caption": "no maps here"}) == []


def test_gif_is_animated_and_loops(tmp_path):
    frames = attention_frames(_photo(), _candidate(7), size=128)
    path = frames_to_gif(frames, tmp_path / "a.gif", ms_per_frame=300)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.is_animated and gif.n_frames == 7
        assert gif.info.get("loop") == 0  # loop forever
        assert gif.size == frames[0].size
        assert gif.info.get("duration") == 300
    data = frames_to_gif(frames, None)
    assert data[:6] in (b"GIF89a", b"GIF87a")
    buf = frames_to_gif(frames, io.BytesIO())
    with Image.open(io.BytesIO(buf.getvalue())) as gif:
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == 7


def test_gif_of_a_single_frame(tmp_path):
    frames = attention_frames(_photo(), _candidate(1), size=64)
    with Image.open(frames_to_gif(frames, tmp_path / "one.gif")) as gif:
        assert gif.n_frames == 1


@pytest.mark.parametrize("n,columns", [(7, 5), (5, 5), (3, 5), (12, 4), (1, 3)])
def test_strip_size(n, columns):
    frames = attention_frames(_photo(320, 240), _candidate(n), size=100)
    w, h = frames[0].size
    gap = 4
    strip = frames_to_strip(frames, columns=columns, gap=gap)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    assert strip.size == (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap)
    # the first cell is the first frame
    assert np.array_equal(np.asarray(strip.crop((0, 0, w, h))), np.asarray(frames[0]))


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        frames_to_strip([])
    with pytest.raises(ValueError):
        frames_to_gif([], io.BytesIO())


def test_fast_enough_for_a_15_word_caption():
    photo, cand = Image.new("RGB", (640, 480), (90, 120, 60)), _candidate(15, grid=14)
    attention_frames(photo, cand)  # warm-up (font loading)
    start = time.perf_counter()
    frames = attention_frames(photo, cand, size=256)
    frames_to_gif(frames, io.BytesIO())
    frames_to_strip(frames)
    elapsed = time.perf_counter() - start
    assert len(frames) == 15
    assert elapsed < 2.0, f"15-word caption took {elapsed:.2f} s to render"  # typically ~0.3 s; CPU is shared
