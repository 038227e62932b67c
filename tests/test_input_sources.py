"""Input sources: files, folders, bytes and PIL images become named items; names are kept."""
from __future__ import annotations

import io

from PIL import Image

from captioner import Captioner
from captioner.inputs.sources import InputItem, as_items


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def test_as_items_names_everything(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "b.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    pil = Image.new("RGB", (8, 8))
    opened = Image.open(tmp_path / "a.png")
    items = as_items([tmp_path, _png("red"), pil, opened, ("mine.jpg", pil), InputItem("kept", b"x")])
    assert [i.name for i in items] == [str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.jpg"), "image-2",
                                       "image-3", "a.png", "mine.jpg", "kept"]


def test_caption_many_keeps_the_names_of_in_memory_items(tiny_model_dir):
    cap = Captioner.load(tiny_model_dir)
    results = list(cap.caption_many([_png("red"), Image.new("RGB", (50, 50), "blue"), ("named.png", _png("green")),
                                     12345], batch_size=2))
    assert [r.image for r in results] == ["image-1", "image-2", "named.png", "item-4"]
    assert [r.error is None for r in results] == [True, True, True, False]
    assert "int" in results[3].error


def test_batched_equals_one_by_one_for_mixed_sources(tiny_model_dir, tmp_path):
    cap = Captioner.load(tiny_model_dir)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "r.jpg")
    sources = [tmp_path / "r.jpg", _png((20, 200, 20)), Image.new("RGB", (30, 70), (0, 0, 250))]
    batched = [r.candidates[0].ids for r in cap.caption_many(sources, batch_size=3, beam_size=3)]
    single = [cap.caption(s, beam_size=3).candidates[0].ids for s in sources]
    assert batched == single
