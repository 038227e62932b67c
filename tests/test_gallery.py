"""Tests for captioner.storage.gallery (no GUI, no model: images are made with PIL)."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import re
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner.storage import Gallery, GalleryError, Page, default_gallery_dir
from captioner.storage.fts_query import to_fts_query, words


def make_image(seed: int = 0, size=(32, 24), fmt="PNG") -> bytes:
    """A small image whose bytes differ for every seed."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed // 256) % 256))
    img.putpixel((0, 0), (seed % 256, (seed >> 8) % 256, (seed >> 16) % 256))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def candidates_for(caption: str, *others: str) -> list[dict]:
    cands = [caption, *others]
    return [{"caption": c, "tokens": c.split(), "score": -1.5 - i, "normalized_score": -0.3 - i,
             "attention": [[[0.25, 0.25], [0.25, 0.25]] for _ in c.split()]}
            for i, c in enumerate(cands)]


def add(g: Gallery, caption: str, seed: int, *others: str, name: str | None = None) -> int:
    return g.save(make_image(seed), name or f"img{seed}.png", caption,
                  candidates_for(caption, *others), 3, "test-model")


def image_files(g: Gallery) -> list[Path]:
    return sorted(p for p in g.images_dir.rglob("*") if p.is_file())


@pytest.fixture
def g(tmp_path):
    gallery = Gallery(tmp_path / "gallery")
    yield gallery
    gallery.close()


# ------------------------------------------------------------------ basics
def test_creates_folder_and_saves(tmp_path):
    folder = tmp_path / "new" / "gallery"
    g = Gallery(folder)
    assert (folder / "gallery.db").exists() and (folder / "images").is_dir()
    assert g.db.journal_mode == "wal"
    cands = candidates_for("a red square", "a red box")
    item_id = g.save(make_image(1, size=(40, 30)), "square.png", "a red square", cands, 5, "m1")
    item = g.get(item_id)
    assert set(item) == {"id", "image_path", "image_hash", "original_name", "width", "height",
                         "caption", "candidates", "beam_size", "model_name", "saved_at", "edited_at",
                         "kind", "video_path", "duration", "tags", "confidence", "deleted_at"}
    assert (item["tags"], item["confidence"], item["deleted_at"]) == ([], None, None)
    assert (item["kind"], item["video_path"], item["duration"]) == ("photo", None, None)
    assert item["id"] == item_id and isinstance(item_id, int)
    assert Path(item["image_path"]).is_absolute() and Path(item["image_path"]).read_bytes() == make_image(1, size=(40, 30))
    assert Path(item["image_path"]).name == f"{item['image_hash']}.png"
    assert Path(item["image_path"]).parent.name == item["image_hash"][:2]
    assert (item["width"], item["height"]) == (40, 30)
    assert item["candidates"] == cands
    assert (item["original_name"], item["caption"], item["beam_size"], item["model_name"]) == \
        ("square.png", "a red square", 5, "m1")
    assert datetime.fromisoformat(item["saved_at"]).utcoffset() == timezone.utc.utcoffset(None)
    assert item["edited_at"] is None
    assert g.get(item_id + 1) is None
    assert g.get("nope") is None and g.get(2**70) is None and g.delete(2**70) is False
    assert g.count() == 1
    # reopening sees the same data
    assert Gallery(folder).get(item_id) == item


def test_save_accepts_path_and_pil_image(g, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(make_image(2, fmt="JPEG"))
    from_path = g.get(g.save(path, None, "from a path"))
    assert from_path["original_name"] == "photo.jpg"
    assert from_path["image_path"].endswith(".jpg")
    pil = Image.new("L", (10, 7), 128)
    from_pil = g.get(g.save(pil, "memory", "from pil", width=100, height=70))
    assert from_pil["image_path"].endswith(".png")
    assert (from_pil["width"], from_pil["height"]) == (100, 70)  # given sizes win
    cmyk = Image.new("CMYK", (5, 5))
    assert g.get(g.save(cmyk, "cmyk", "cmyk image"))["width"] == 5


def test_pages_leave_out_attention_maps(g):
    item_id = add(g, "a dog with attention", 1)
    full = g.get(item_id)
    assert all("attention" in c for c in full["candidates"])
    for page in (g.browse(), g.search("dog")):
        light = {k: v for k, v in page.items[0].items() if k not in ("highlight", "matched_in")}
        assert light["candidates"] == [{k: v for k, v in c.items() if k != "attention"}
                                       for c in full["candidates"]]
        assert {k: v for k, v in light.items() if k != "candidates"} == \
            {k: v for k, v in full.items() if k != "candidates"}
    no_maps = g.get(g.save(make_image(2), "n.png", "no maps", [{"caption": "no maps"}]))
    assert no_maps["candidates"] == [{"caption": "no maps"}]


def test_numpy_attention_is_stored_as_lists(g):
    cands = [{"caption": "a cat", "tokens": ["a", "cat"], "score": np.float32(-1.0),
              "normalized_score": -0.5, "attention": np.full((2, 3, 3), 0.5)}]
    item = g.get(g.save(make_image(3), "c.png", "a cat", cands))
    assert item["candidates"][0]["attention"] == [[[0.5] * 3] * 3] * 2


def test_dedupe_same_image_one_file(g):
    a = add(g, "first save", 7)
    b = add(g, "second save", 7)
    assert a != b and g.count() == 2
    assert g.get(a)["image_path"] == g.get(b)["image_path"]
    assert len(image_files(g)) == 1


# ------------------------------------------------------------------ search
def test_search_stemming(g):
    item_id = add(g, "two dogs run", 1)
    add(g, "a cat sleeping", 2)
    for query in ("dog", "dogs", "running", "DOG", "do*"):
        page = g.search(query)
        assert [i["id"] for i in page.items] == [item_id], query


def test_search_covers_candidates_and_file_name(g):
    item_id = add(g, "a bird on a wire", 1, "a sparrow on a cable", name="holiday_2024.png")
    assert [i["id"] for i in g.search("sparrow").items] == [item_id]
    assert [i["id"] for i in g.search("holiday").items] == [item_id]


def test_search_ranking(g):
    caption_hit = add(g, "a dog on the beach", 1)
    add(g, "a cat on a sofa", 2, "a dog on a sofa")  # dog only in an alternative, newer
    assert g.search("dog").items[0]["id"] == caption_hit
    many = add(g, "a dog and another dog play with a dog toy", 3)
    add(g, "a man walks past a small shop with a dog", 4)
    ranked = [i["id"] for i in g.search("dog").items]
    assert ranked.index(many) < 2 and len(ranked) == 4
    # every word must match; if none match them all, any word will do
    both = g.search("dog beach")
    assert [i["id"] for i in both.items] == [caption_hit] and both.match_all
    fallback = g.search("dog zebra")
    assert fallback.total == 4 and not fallback.match_all


ODD_QUERIES = ['"', "'", '""', "dog's", "AND", "OR", "NOT", "dog AND", "NOT dog", "NEAR",
               "NEAR(dog cat)", "*", "dog*", "*dog", "-", "-dog", ":", "caption:dog", "(", ")",
               "(dog", "dog)", "^dog", "{caption}: dog", "a + b", "?!.,;", "\\", "%", "_",
               "\x00", "ß straße", "café", "日本語 の 犬", "🐶 dog", "x" * 5000, "dog " * 2000,
               "", " ", "\t\n ", "null", "1=1; DROP TABLE items; --", "items_fts"]


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_odd_queries_give_a_page_or_say_why(g, query):
    """Any text gives a page, or (nothing to search for) a GalleryError that says so; never an SQL error."""
    add(g, "a dog's toy", 1)
    add(g, "Straße café in 日本語 の 犬", 2)
    try:
        page = g.search(query)
    except GalleryError as exc:
        assert re.search(r"has no searchable word|NOT without a word to look for", str(exc)), exc
        assert "\n" not in str(exc) and len(str(exc)) < 300
    else:
        assert isinstance(page, Page) and page.total >= 0 and page.pages >= 1
    assert g.count() == 2  # nothing was dropped


def test_empty_query_returns_browse(g):
    for i in range(3):
        add(g, f"thing {i}", i)
    assert g.search("") == g.browse()
    assert g.search(" \t\n ") == g.browse() and g.search(None) == g.browse()


def test_unicode_search(g):
    cafe = add(g, "Straße café", 1)
    assert [i["id"] for i in g.search("cafe").items] == [cafe]
    assert [i["id"] for i in g.search("straße").items] == [cafe]


def test_fts_query_quotes_everything():
    assert to_fts_query('dogs AND "x" NEAR( ru*') == '"dogs" "and" "x" "near" "ru"*'
    assert to_fts_query("dog cat", match_all=False) == '"dog" OR "cat"'
    assert to_fts_query(" \"' *-:( ") is None
    assert len(words("w " * 500)) == 1
    assert len(words(" ".join(f"w{i}" for i in range(500)))) == 32


# ------------------------------------------------------------------ paging
def test_paging(g):
    ids = [add(g, f"a photo of a tree number {i}", i) for i in range(30)]
    pages = [g.browse(page=p, per_page=12) for p in (1, 2, 3)]
    assert [len(p.items) for p in pages] == [12, 12, 6]
    assert all(p.total == 30 and p.pages == 3 and p.per_page == 12 for p in pages)
    assert [i["id"] for p in pages for i in p.items] == ids[::-1]  # newest first
    assert g.browse(page=4, per_page=12).items == []
    found = [g.search("tree", page=p, per_page=12) for p in (1, 2, 3)]
    assert [len(p.items) for p in found] == [12, 12, 6] and found[0].total == 30
    assert sorted(i["id"] for p in found for i in p.items) == ids
    assert g.search("tree", page=0, per_page=0).page == 1  # clamped, not an error
    empty = g.search("nothing-here-zzz")
    assert (empty.items, empty.total, empty.pages) == ([], 0, 1)


# ------------------------------------------------------------ edit / delete
def test_update_caption_search_follows(g):
    item_id = add(g, "a cat sleeping on a red sofa", 1, "a cat lying on a couch")
    g.update_caption(item_id, "a brown dog in the snow")
    edited = g.get(item_id)
    assert edited["caption"] == "a brown dog in the snow"
    assert datetime.fromisoformat(edited["edited_at"]) >= datetime.fromisoformat(edited["saved_at"])
    assert [i["id"] for i in g.search("snow").items] == [item_id]
    assert g.search("sofa").total == 0
    assert g.search("couch").total == 1  # other beam candidates stay searchable
    with pytest.raises(GalleryError, match="Item 999 does not exist"):
        g.update_caption(999, "x")


def test_delete_removes_file_when_last_user_gone(g):
    a = add(g, "shared picture one", 5)
    b = add(g, "shared picture two", 5)
    other = add(g, "another picture", 6)
    path = Path(g.get(a)["image_path"])
    assert g.delete(a) is True  # to the trash
    assert path.exists() and g.get(a) is None and g.count() == 2
    assert [i["id"] for i in g.search("shared").items] == [b]
    assert g.delete(b) is True
    assert path.exists() and g.search("shared").total == 0  # the trash keeps the file
    assert g.delete(b) is False
    assert g.empty_trash() == 2
    assert not path.exists() and g.get(a, include_trash=True) is None
    assert Path(g.get(other)["image_path"]).exists()
    assert g.integrity_check() == "ok"


def test_remove_orphan_images(g):
    keep = add(g, "kept", 1)
    orphan = g.images_dir / "ab" / ("ab" + "0" * 62 + ".png")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(make_image(2))
    assert g.remove_orphan_images() == [orphan]
    assert not orphan.exists() and Path(g.get(keep)["image_path"]).exists()


# ------------------------------------------------------------------ export
def test_export_json_and_csv_round_trip(g, tmp_path):
    add(g, "a dog, with \"quotes\" and a\nnew line", 1, "ünïcödé 🐶", name="a,b.png")
    add(g, "second", 2)
    items = list(g.iter_items())
    json_path = g.export(tmp_path / "out" / "gallery.json")
    assert json.loads(json_path.read_text(encoding="utf-8")) == items
    csv_path = g.export(tmp_path / "gallery.csv", fmt="csv")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for row, item in zip(rows, items):
        assert all("attention" in c for c in item["candidates"])  # JSON keeps the attention maps
        assert json.loads(row["candidates"]) == [{k: v for k, v in c.items() if k != "attention"}
                                                 for c in item["candidates"]]  # CSV leaves them out
        assert "attention" not in csv_path.read_text(encoding="utf-8")
        assert json.loads(row["tags"]) == item["tags"] and row["confidence"] == ""
        for key in ("id", "width", "height", "beam_size"):
            assert int(row[key]) == item[key]
        for key in ("image_path", "image_hash", "original_name", "caption", "model_name", "saved_at"):
            assert row[key] == item[key]
    with pytest.raises(GalleryError, match="Unknown export format"):
        g.export(tmp_path / "x.xml", fmt="xml")


def test_export_empty_gallery(g, tmp_path):
    assert json.loads(g.export(tmp_path / "e.json").read_text()) == []


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [b"not an image at all", make_image(1, fmt="JPEG")[:200], b"",
                                 "/no/such/file.jpg", 12345])
def test_bad_image_raises_and_changes_nothing(g, bad):
    add(g, "existing", 9)
    files_before = image_files(g)
    with pytest.raises(GalleryError, match="Could not read the image .*the gallery was not changed"):
        g.save(bad, "x.jpg", "caption", [])
    assert g.count() == 1 and image_files(g) == files_before


def test_bad_candidates_raise(g):
    with pytest.raises(GalleryError, match="Candidate 1"):
        g.save(make_image(1), "x.png", "c", [{"score": 1}])
    with pytest.raises(GalleryError):
        g.save(make_image(1), "x.png", "c", [{"caption": "c", "attention": object()}])
    with pytest.raises(GalleryError, match="width"):
        g.save(make_image(1), "x.png", "c", [], width="wide")
    with pytest.raises(GalleryError, match="caption must be text"):
        g.save(make_image(1), "x.png", None, [])
    assert g.count() == 0 and image_files(g) == []


def test_unusable_folder_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GalleryError, match="Could not open the gallery"):
        Gallery(blocker)
    not_a_db = tmp_path / "broken"
    (not_a_db / "images").mkdir(parents=True)
    (not_a_db / "gallery.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match="Could not open the gallery"):
        Gallery(not_a_db)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout")
def test_default_gallery_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_gallery_dir() == tmp_path / "data" / "captioner" / "gallery"
    assert not default_gallery_dir().exists()
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_gallery_dir() == Path.home() / ".local" / "share" / "captioner" / "gallery"


# -------------------------------------------------------------- concurrency
WRITERS, PER_WRITER = 8, 50
SHARED_SEED = 999_999  # every 10th item of every writer uses this same picture


def write_items(folder: str, writer: int) -> None:
    """Save PER_WRITER distinct items (module level so 'spawn' children can run it)."""
    gallery = Gallery(folder)
    for i in range(PER_WRITER):
        seed = SHARED_SEED if i % 10 == 0 else writer * 1000 + i
        gallery.save(make_image(seed, size=(8, 8)), f"w{writer}.png",
                     f"concurrent writer{writer} item{i}", candidates_for("x"), 3, "m")
        if i % 10 == 0:  # mix in reads
            gallery.search(f"writer{writer}")
    gallery.close()


def test_concurrent_threads_and_processes(tmp_path):
    folder = str(tmp_path / "gallery")
    g = Gallery(folder)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=write_items, args=(folder, w)) for w in range(WRITERS // 2)]
    for p in procs:
        p.start()
    errors = []

    def run(w):
        try:
            write_items(folder, w)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WRITERS // 2, WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for p in procs:
        p.join(120)
    assert not errors
    assert [p.exitcode for p in procs] == [0] * (WRITERS // 2)
    assert g.count() == WRITERS * PER_WRITER
    shared = WRITERS * (PER_WRITER // 10)
    assert len(image_files(g)) == WRITERS * PER_WRITER - shared + 1  # deduped under load
    for w in range(WRITERS):
        assert g.search(f"writer{w}", per_page=100).total == PER_WRITER
        for i in range(PER_WRITER):
            assert g.search(f"writer{w} item{i}").total == 1
    assert g.integrity_check() == "ok"


def test_delete_between_image_write_and_insert_keeps_file(g, monkeypatch):
    """A delete that frees the file after save wrote it but before the row exists."""
    picture = make_image(42)
    first = add(g, "same picture", 42)
    real_write = g._write_image

    def write_then_race(encoded, rel, force=False):
        real_write(encoded, rel, force)
        if not force:  # another user deletes the only item using this file now
            g.delete(first)
            g.empty_trash()
            assert not (g.images_dir / rel).exists()

    monkeypatch.setattr(g, "_write_image", write_then_race)
    second = g.save(picture, "same.png", "same picture again")
    assert g.get(first) is None
    assert second != first  # ids are never reused
    assert Path(g.get(second)["image_path"]).read_bytes() == picture


# ------------------------------------------------------------------ a whole CaptionResult
def test_save_result_keeps_caption_candidates_tags_confidence_and_is_found_by_search(g):
    import numpy as np
    import torch

    from captioner.decoding.candidate import Candidate
    from captioner.pipeline import CaptionResult
    from captioner.tags import Tag

    def candidate(text: str, score: float, confidence: float, source: str = "generated") -> Candidate:
        words = text.split()
        return Candidate(words, list(range(len(words))), score, torch.full((len(words), 2, 2), 0.25),
                         confidence, source)

    result = CaptionResult("dog.png", [candidate("a dog on the grass", -2.0, 0.81),
                                       candidate("a brown puppy runs", -2.5, 0.4, "bank")],
                           width=32, height=24, beam_size=3, tags=[Tag("dog", 0.9), Tag("lawn", 0.6)],
                           confidence=0.81, features=np.full((4, 8), 0.5, np.float16))
    item_id = g.save_result(make_image(7), result, name="dog.png", model="test-model")
    item = g.get(item_id)
    assert item["caption"] == "a dog on the grass" and item["confidence"] == pytest.approx(0.81)
    assert [c["caption"] for c in item["candidates"]] == ["a dog on the grass", "a brown puppy runs"]
    assert [c["source"] for c in item["candidates"]] == ["generated", "bank"]
    assert [c["confidence"] for c in item["candidates"]] == [0.81, 0.4]
    assert len(item["candidates"][0]["attention"]) == 5  # one map per word
    assert item["tags"] == [{"label": "dog", "score": pytest.approx(0.9)}, {"label": "lawn", "score": pytest.approx(0.6)}]
    assert (item["beam_size"], item["model_name"], item["original_name"]) == (3, "test-model", "dog.png")
    assert (item["width"], item["height"]) == (32, 24)
    ids, grids = g.features([item_id], model_name="test-model")
    assert ids == [item_id] and grids.shape == (1, 4, 8)
    assert [i["id"] for i in g.search("grass").items] == [item_id]
    assert [(i["id"], i["matched_in"]) for i in g.search("lawn").items] == [(item_id, "tags")]
    assert [(i["id"], i["matched_in"]) for i in g.search("puppy").items] == [(item_id, "candidates")]

    # another candidate chosen keeps its own confidence; the user's own text keeps none
    chosen = g.save_result(make_image(7), result, name="dog.png", choice=1)
    assert (g.get(chosen)["caption"], g.get(chosen)["confidence"]) == ("a brown puppy runs", 0.4)
    edited = g.save_result(make_image(7), result, name="dog.png", choice=1, caption="my dog Rex")
    assert (g.get(edited)["caption"], g.get(edited)["confidence"]) == ("my dog Rex", None)
    assert [i["id"] for i in g.search("Rex").items] == [edited]

    with pytest.raises(GalleryError, match="no candidate 2"):
        g.save_result(make_image(8), result, choice=2)
    with pytest.raises(GalleryError, match="not a picture"):
        g.save_result(make_image(8), CaptionResult("x.png", error="x.png: not a picture"))
    assert g.count() == 3
