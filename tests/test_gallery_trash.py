"""Gallery features of issue 12 and 15, library side: the trash (delete with undo), caption history,
duplicate saves refused, sorting and filtering, stored encoder features."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from captioner.storage import DuplicateItemError, Gallery, GalleryError
from test_gallery import add, candidates_for, image_files, make_image


@pytest.fixture
def g(tmp_path):
    gallery = Gallery(tmp_path / "gallery")
    yield gallery
    gallery.close()


def ids(page) -> list[int]:
    return [item["id"] for item in page.items]


def set_saved_at(g: Gallery, item_id: int, when: str) -> None:
    with sqlite3.connect(g.db_path) as conn:
        conn.execute("UPDATE items SET saved_at = ? WHERE id = ?", [when, item_id])


# ------------------------------------------------------------------ trash
def test_delete_moves_to_the_trash_and_restore_brings_it_back(g):
    keep, gone = add(g, "a dog on the grass", 1), add(g, "a cat on the grass", 2)
    path = Path(g.get(gone)["image_path"])
    assert g.delete(gone) is True and g.delete(gone) is False  # already in the trash
    assert g.get(gone) is None and g.get(gone, include_trash=True)["deleted_at"] is not None
    assert ids(g.browse()) == [keep] and g.count() == 1 and g.search("cat").total == 0
    assert [i["id"] for i in g.iter_items()] == [keep]
    trash = g.trash()
    assert ids(trash) == [gone] and trash.total == 1 and trash.items[0]["deleted_at"]
    assert path.exists() and g.orphan_images() == [] and g.integrity_check() == "ok"
    assert g.restore(gone) is True and g.restore(gone) is False and g.restore(999) is False
    assert g.get(gone)["deleted_at"] is None and g.get(gone)["caption"] == "a cat on the grass"
    assert ids(g.search("cat")) == [gone] and g.trash().total == 0 and g.count() == 2


def test_trash_pages_newest_deleted_first(g):
    items = [add(g, f"item {i}", i) for i in range(5)]
    for item_id in (items[3], items[0], items[4]):
        g.delete(item_id)
    with sqlite3.connect(g.db_path) as conn:  # deleted in that order, a second apart
        for n, item_id in enumerate((items[3], items[0], items[4])):
            conn.execute("UPDATE items SET deleted_at = ? WHERE id = ?", [f"2026-01-01T00:00:0{n}+00:00", item_id])
    assert ids(g.trash(1, 2)) == [items[4], items[0]] and ids(g.trash(2, 2)) == [items[3]]
    assert g.trash(1, 2).pages == 2


def test_empty_trash_removes_rows_and_unused_files_only(g, tmp_path):
    shared_a, shared_b = add(g, "shared one", 5), add(g, "shared two", 5)
    alone = add(g, "alone", 6)
    live = add(g, "live", 7)
    shared = Path(g.get(shared_a)["image_path"])
    lonely = Path(g.get(alone)["image_path"])
    g.update_caption(alone, "alone, edited")
    g.set_features(alone, np.ones((4, 3)), "enc")
    for item_id in (shared_a, alone):
        g.delete(item_id)
    assert g.empty_trash() == 2
    assert not lonely.exists() and shared.exists()  # shared_b still uses the shared picture
    assert g.get(shared_a, include_trash=True) is None and g.get(alone, include_trash=True) is None
    assert g.trash().total == 0 and g.count() == 2 and ids(g.browse()) == [live, shared_b]
    with sqlite3.connect(g.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM caption_history").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM item_features").fetchone()[0] == 0
    assert g.integrity_check() == "ok" and g.orphan_images() == [] and g.missing_images() == []
    assert g.empty_trash() == 0
    g.delete(shared_b)
    assert shared.exists() and g.empty_trash() == 1 and not shared.exists()
    assert len(image_files(g)) == 1  # the live item's


def test_a_trashed_item_keeps_its_file_for_a_live_item_saved_later(g):
    first = add(g, "first caption", 8)
    g.delete(first)
    second = g.save(make_image(8), "again.png", "another caption")
    assert g.empty_trash() == 1
    assert Path(g.get(second)["image_path"]).read_bytes() == make_image(8)


def test_empty_trash_is_atomic(g, monkeypatch):
    items = [add(g, f"item {i}", i) for i in range(4)]
    for item_id in items[:3]:
        g.delete(item_id)
    files = image_files(g)
    real_purge = g._purge_rows

    def purge_then_fail(db, doomed):
        real_purge(db, doomed)  # every row is gone inside the transaction...
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(g, "_purge_rows", purge_then_fail)
    with pytest.raises(sqlite3.OperationalError, match="simulated"):
        g.empty_trash()
    assert g.trash().total == 3 and g.count() == 1 and image_files(g) == files  # ...and all came back
    monkeypatch.undo()

    def fail_files(_files):
        raise OSError("crash before the files went (simulated)")

    monkeypatch.setattr(g, "_remove_unused_files", fail_files)
    with pytest.raises(OSError):
        g.empty_trash()
    assert g.trash().total == 0 and g.count() == 1 and g.missing_images() == []
    assert len(g.orphan_images()) == 3  # a crash leaves unused files only, which the check cleans up
    assert len(g.remove_orphan_images()) == 3 and g.integrity_check() == "ok"


def test_trash_on_a_read_only_gallery_is_refused(tmp_path):
    folder = tmp_path / "g"
    with Gallery(folder) as g:
        item = add(g, "a dog", 1)
    ro = Gallery(folder, read_only=True)
    for call in (lambda: ro.delete(item), lambda: ro.restore(item), ro.empty_trash,
                 lambda: ro.update_caption(item, "x")):
        with pytest.raises(GalleryError, match="read-only"):
            call()
    assert ro.trash().total == 0 and ro.history(item) == []
    assert ro.search("dog").items[0]["highlight"] == "a <mark>dog</mark>"  # highlights need no write access


# ------------------------------------------------------------------ caption history
def test_update_caption_keeps_the_old_one(g):
    item = add(g, "a dog on the beach", 1)
    assert g.history(item) == []
    g.update_caption(item, "my dog Rex on the beach")
    g.update_caption(item, "Rex at Brighton")
    g.update_caption(item, "Rex at Brighton")  # the same text: nothing to keep
    history = g.history(item)
    assert [h["caption"] for h in history] == ["a dog on the beach", "my dog Rex on the beach"]
    assert all(h["replaced_at"] for h in history)
    assert g.get(item)["caption"] == "Rex at Brighton" and g.get(item)["edited_at"] == history[-1]["replaced_at"]
    assert g.search("beach").total == 0 and [i["id"] for i in g.search("brighton").items] == [item]
    with pytest.raises(GalleryError, match="does not exist"):
        g.history(999)
    with pytest.raises(GalleryError, match="does not exist"):
        g.update_caption(999, "x")


def test_a_trashed_item_cannot_be_edited(g):
    item = add(g, "a dog", 1)
    g.delete(item)
    with pytest.raises(GalleryError, match="in the trash"):
        g.update_caption(item, "edited")
    assert g.get(item, include_trash=True)["caption"] == "a dog"


# ------------------------------------------------------------------ duplicate saves
def test_same_photo_and_caption_is_refused_with_the_existing_id(g):
    first = add(g, "a dog on the beach", 1)
    with pytest.raises(DuplicateItemError, match="already in the gallery with this caption") as caught:
        add(g, "a dog on the beach", 1)
    assert caught.value.item_id == first and isinstance(caught.value, GalleryError)
    with pytest.raises(DuplicateItemError):
        g.save(make_image(1), "other name.png", "  A dog on the  beach ")  # spacing and case do not matter
    assert g.count() == 1
    other_caption = add(g, "a dog by the sea", 1)
    other_photo = add(g, "a dog on the beach", 2)
    assert len({first, other_caption, other_photo}) == 3 and g.count() == 3


def test_duplicate_of_a_trashed_item_is_saved(g):
    first = add(g, "a dog", 1)
    g.delete(first)
    again = add(g, "a dog", 1)
    assert again != first and g.count() == 1


def test_racing_duplicate_saves_store_one_item(g):
    results, barrier = [], threading.Barrier(6)

    def save():
        barrier.wait(30)
        try:
            results.append(g.save(make_image(3), "p.png", "the same photo", candidates_for("x")))
        except DuplicateItemError as exc:
            results.append(("dup", exc.item_id))

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    saved = [r for r in results if isinstance(r, int)]
    assert len(saved) == 1 and len(results) == 6
    assert all(r == ("dup", saved[0]) for r in results if not isinstance(r, int))
    assert g.count() == 1


# ------------------------------------------------------------------ sort and filter
def test_browse_sorts_and_filters(g):
    a = g.save(make_image(1), "a.png", "Zebra crossing", model_name="m1", confidence=0.4)
    b = g.save(make_image(2), "b.png", "apple tree", model_name="m2", confidence=0.9)
    c = g.save(make_image(3), "c.png", "a boat", model_name="m2")
    v = g.save_video(b"\x00\x00\x00\x18ftypisom" + b"x" * 50, "v.mp4",
                     [{"start": 0, "end": 1, "caption": "a video"}], model_name="m1")
    for item_id, day in ((a, "2026-01-10T08:00:00+00:00"), (b, "2026-02-01T23:59:59+00:00"),
                         (c, "2026-02-02T00:00:00+00:00"), (v, "2026-03-01T12:00:00+00:00")):
        set_saved_at(g, item_id, day)
    assert ids(g.browse()) == [v, c, b, a]
    assert ids(g.browse(descending=False)) == [a, b, c, v]
    assert ids(g.browse(sort="caption", descending=False)) == [c, v, b, a]  # case does not matter
    assert ids(g.browse(sort="confidence")) == [b, a, v, c]  # none last; then newest
    assert ids(g.browse(sort="confidence", descending=False)) == [a, b, c, v]
    assert ids(g.browse(model="m2")) == [c, b] and g.browse(model="m2").total == 2
    assert ids(g.browse(kind="video")) == [v] and ids(g.browse(kind="photo")) == [c, b, a]
    assert ids(g.browse(saved_from="2026-02-01", saved_to="2026-02-01")) == [b]  # a day counts whole
    assert ids(g.browse(saved_from="2026-02-02")) == [v, c]
    assert ids(g.browse(saved_to="2026-02-01T12:00")) == [a]
    assert ids(g.browse(min_confidence=0.5)) == [b] and ids(g.browse(max_confidence=0.5)) == [a]
    assert g.models() == ["m1", "m2"]
    g.delete(a)
    assert ids(g.browse(model="m1")) == [v]
    g.delete(v)
    assert g.models() == ["m2"]
    for bad, match in (({"sort": "size"}, "Unknown sort"), ({"kind": "gif"}, "Unknown kind"),
                       ({"saved_from": "last week"}, "not a date"), ({"min_confidence": 2}, "from 0 to 1")):
        with pytest.raises(GalleryError, match=match):
            g.browse(**bad)


# ------------------------------------------------------------------ confidence
@pytest.mark.parametrize("bad", [-0.1, 1.5, "high", float("nan")])
def test_bad_confidence_is_refused(g, bad):
    with pytest.raises(GalleryError, match="confidence must be a number from 0 to 1"):
        g.save(make_image(1), "a.png", "a dog", confidence=bad)
    assert g.count() == 0 and image_files(g) == []


# ------------------------------------------------------------------ features (issue 15)
def test_features_round_trip_as_float16(g):
    a, b, c = add(g, "one", 1), add(g, "two", 2), add(g, "three", 3)
    rng = np.random.default_rng(0)
    grid_a, grid_b = rng.normal(size=(81, 16)).astype(np.float32), rng.normal(size=(81, 16))
    g.set_features(a, grid_a, "enc-1")
    g.set_features(b, grid_b, "enc-1")
    found, array = g.features()
    assert found == [a, b] and array.dtype == np.float16 and array.shape == (2, 81, 16)
    np.testing.assert_array_equal(array[0], grid_a.astype(np.float16))
    with sqlite3.connect(g.db_path) as conn:
        row = conn.execute("SELECT model_name, dtype, shape, length(grid) FROM item_features WHERE item_id = ?",
                           [a]).fetchone()
    assert row == ("enc-1", "float16", "81,16", 81 * 16 * 2)
    found, pooled = g.features([b, c, 999], pooled=True)
    assert found == [b] and pooled.shape == (1, 16)
    np.testing.assert_allclose(pooled[0], grid_b.astype(np.float16).astype(np.float32).mean(axis=0), rtol=1e-5)
    assert g.ids_without_features("enc-1") == [c] and g.ids_without_features("enc-2") == [a, b, c]
    g.set_features(a, grid_a[:, :8], "enc-2")  # replaces a's
    assert g.ids_without_features("enc-1") == [a, c]
    with pytest.raises(GalleryError, match="differ in shape"):
        g.features()
    assert g.features(model_name="enc-1")[0] == [b]
    g.delete(b)
    assert g.features(model_name="enc-1")[0] == [] and g.ids_without_features("enc-1") == [a, c]
    assert g.features([])[0] == []


def test_features_saved_with_the_item(g):
    grid = np.full((9, 4), 0.5, dtype=np.float16)
    item = g.save(make_image(1), "a.png", "a dog", model_name="enc", features=grid)
    found, array = g.features()
    assert found == [item] and array.shape == (1, 9, 4)
    with pytest.raises(GalleryError, match="model_name"):
        g.save(make_image(2), "b.png", "a cat", features=grid)  # whose features?
    assert g.count() == 1


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.full((2, 2), np.nan), "abc", np.zeros((2, 2, 2, 2))])
def test_bad_features_are_refused(g, bad):
    item = add(g, "a dog", 1)
    with pytest.raises(GalleryError):
        g.set_features(item, bad, "enc")
    assert g.features()[0] == []
    with pytest.raises(GalleryError, match="does not exist"):
        g.set_features(999, np.ones(3), "enc")


def test_check_finds_history_and_features_of_no_item_and_repair_removes_them(g):
    item = add(g, "a dog", 1)
    g.update_caption(item, "my dog")
    g.set_features(item, np.ones((2, 2)), "enc")
    with sqlite3.connect(g.db_path) as conn:  # as a crash or an outside tool could leave them
        conn.execute("INSERT INTO caption_history (item_id, caption, replaced_at) VALUES (77, 'x', 'y')")
        conn.execute("INSERT INTO item_features (item_id, model_name, dtype, shape, grid) "
                     "VALUES (78, 'enc', 'float16', '1', x'0000')")
    assert g.integrity_check() == ("caption history: 1 earlier caption(s) of no item\n"
                                   "features: 1 feature grid(s) of no item")
    g.rebuild_search_index()
    assert g.integrity_check() == "ok"
    assert [h["caption"] for h in g.history(item)] == ["a dog"] and g.features()[0] == [item]
