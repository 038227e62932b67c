"""The studio's Gallery tab, its handlers in-process (issues 12 and 15): search by words (AND / OR / NOT,
phrases, highlight, where it matched, a query with no word), by meaning and "more like this"; sort and
filter; edit a caption (history); delete, undo, the trash; download a photo with its caption in its
metadata; CSV export without attention; import a folder; ids and paths from the browser refused."""
from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from captioner.pipeline import Captioner
from captioner.storage import Gallery
from captioner.studio import gallery_import, gallery_search, gallery_tab, library_render
from captioner.studio.app import Studio

CAPTIONS = ["a dog runs by the lake", "a dog plays on the grass", "two children play on the beach",
            "a cat sleeps on a sofa"]
COLORS = [(200, 40, 40), (40, 160, 40), (40, 40, 200), (200, 200, 40)]
ATTENTION = [[[0.25, 0.25], [0.25, 0.25]]] * 3


def photo(color, size=(96, 64)) -> Image.Image:
    img = Image.new("RGB", size, color)
    for x in range(size[0] // 3, size[0] // 2):
        for y in range(size[1] // 3, size[1] // 2):
            img.putpixel((x, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    return img


def _gif(path: Path) -> Path:
    frames = [photo(c) for c in COLORS[:2]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)
    return path


def pick(index):
    return SimpleNamespace(index=index)


@pytest.fixture(scope="module")
def captioner(tiny_model_dir):
    return Captioner.load(tiny_model_dir)


@pytest.fixture()
def studio(captioner, tmp_path):
    """A studio on a fresh gallery (the model is loaded once for the module)."""
    s = Studio(captioner, Gallery(tmp_path / "gallery"))
    s.thumbs = tmp_path / "tmp" / "captioner-studio" / "thumbs"
    s.exports = tmp_path / "tmp" / "captioner-studio" / "exports"
    s.library.downloads = tmp_path / "tmp" / "captioner-studio" / "downloads"
    s.library.imports = tmp_path / "tmp" / "captioner-studio" / "imports"
    s.upload_dir = None
    return s


@pytest.fixture()
def items(studio):
    """Four photos; the first with candidates (attention), tags and a confidence, the last by another model."""
    ids = []
    for i, (caption, color) in enumerate(zip(CAPTIONS, COLORS)):
        kwargs = {}
        if i == 0:
            kwargs = dict(candidates=[{"caption": caption, "tokens": caption.split(), "score": -3.0,
                                       "attention": ATTENTION},
                                      {"caption": "a brown animal near water", "score": -4.0}],
                          tags=[{"label": "retriever", "score": 0.8}], confidence=0.82, beam_size=2)
        ids.append(studio.gallery.save(photo(color), f"photo{i}.png", caption,
                                       model_name="other-model" if i == 3 else studio.model_name, **kwargs))
    return ids


def grid(studio, query="", view=None, page=1):
    found, page_state = studio.library.search(query, page, view)
    out = studio.library.show_grid(page_state)
    return found, page_state, out


def view(studio, **changes):
    base = dict(meaning=False, sort=gallery_search.DEFAULT_SORT, model=gallery_search.ALL_MODELS,
                kind="Photos and videos", saved_from="", saved_to="", which=gallery_search.VIEWS[0], candidates=False)
    base.update(changes)
    v, page = studio.library.set_view(base["meaning"], base["sort"], base["model"], base["kind"], base["saved_from"],
                                      base["saved_to"], base["which"], base["candidates"])
    assert page == 1
    return v


# ------------------------------------------------------------------ search by words
def test_search_operators_highlight_and_where_it_matched(studio, items):
    dog_lake, dog_grass, children, cat = items
    ids = lambda q: [it["id"] for it in studio.library.search(q, 1)[0]["items"]]  # noqa: E731
    assert ids("dog AND lake") == [dog_lake]
    assert ids("dog NOT lake") == [dog_grass]
    assert sorted(ids("dog OR cat")) == sorted([dog_lake, dog_grass, cat])
    assert ids('"on the grass"') == [dog_grass]
    assert ids("child") == [children]  # children
    found, page, out = grid(studio, "dog lake")
    assert [it["id"] for it in found["items"]] == [dog_lake]
    item = found["items"][0]
    assert item["matched_in"] == "caption" and "<mark>dog</mark>" in item["highlight"]
    matches = out[6]
    assert matches.visible is True
    assert "<mark>dog</mark>" in matches.value and "<mark>lake</mark>" in matches.value
    assert "matched in the saved caption" in matches.value and 'data-index="0"' in matches.value
    # an unchosen candidate is not searched unless asked (the box, or "candidates:"); then it matches and says so
    assert grid(studio, "animal")[0]["items"] == []
    for found, _page, out in (grid(studio, "candidates: animal"),
                             grid(studio, "animal", view(studio, candidates=True))):
        assert [it["id"] for it in found["items"]] == [dog_lake]
        assert "matched in a candidate you did not pick" in out[6].value
        assert out[0].value[0]["caption"].startswith("[in an unpicked candidate] ")
    # tags are searched
    found, _, out = grid(studio, "retriever")
    assert [it["id"] for it in found["items"]] == [dog_lake] and "matched in the tags (retriever)" in out[6].value
    # the opened item shows the highlight too
    found, page, out = grid(studio, "lake")
    details, selected, *_ = studio.library.open_item(out[3], page, pick(0))
    assert selected == dog_lake and "match-caption" in details, details[-3000:]
    assert "<mark>lake</mark>" in details


def test_a_query_with_no_word_says_so(studio, items):
    for query in ("%", "*", "AND", "()"):
        with pytest.warns(UserWarning, match="searchable word"):
            found, page, out = grid(studio, query)
        assert found["items"] == [] and "searchable word" in found["error"]
        line = out[1]
        assert "searchable word" in line and "matches" not in line
        assert out[6].visible is False


def test_browsing_has_no_match_list(studio, items):
    found, page, out = grid(studio, "")
    assert found["total"] == 4 and out[6].visible is False and "**4** items saved" in out[1]


def test_highlight_is_rebuilt_safely():
    caption = 'a <b>dog</b> & "cat"'
    good = 'a &lt;b&gt;<mark>dog</mark>&lt;/b&gt; &amp; "cat"'
    assert library_render.safe_highlight(good, caption) == 'a &lt;b&gt;<mark>dog</mark>&lt;/b&gt; &amp; &quot;cat&quot;'
    for bad in ['a <b><mark>dog</mark></b> & "cat"',  # a tag that is not a mark is shown as text, not run
                '<mark>a <b>dog</b> & "cat"',  # unpaired
                '<mark><mark>a</mark></mark> <b>dog</b> & "cat"',
                '<mark>x</mark><img src=x onerror=alert(1)>']:  # not the caption
        out = library_render.safe_highlight(bad, caption)
        assert "<b>" not in out and "<img" not in out
    assert library_render.safe_highlight('<mark>x</mark><img src=x onerror=alert(1)>', "x") == "x"
    assert library_render.safe_highlight(None, "<i>") == "&lt;i&gt;"
    assert "<script" not in library_render.match_list(
        [{"caption": "<script>x</script>", "highlight": "<script>x</script>", "matched_in": "<img>"}],
        {"mode": "words"})


# ------------------------------------------------------------------ sort and filter
def test_sort_and_filter(studio, items):
    dog_lake, dog_grass, children, cat = items
    ids = lambda v, q="": [it["id"] for it in studio.library.search(q, 1, v)[0]["items"]]  # noqa: E731
    assert ids(view(studio, sort="Oldest first")) == items
    assert ids(view(studio, sort="Newest first")) == items[::-1]
    assert ids(view(studio, sort="Caption A–Z")) == [cat, dog_grass, dog_lake, children]
    assert ids(view(studio, sort="Most confident"))[0] == dog_lake
    assert ids(view(studio, model="other-model")) == [cat]
    assert ids(view(studio, model="no-such-model")) == items[::-1]  # not a model of the gallery: no filter
    assert ids(view(studio, kind="Videos")) == []
    assert len(ids(view(studio, kind="Photos"))) == 4
    today = studio.gallery.get(dog_lake)["saved_at"][:10]
    assert len(ids(view(studio, saved_from=today, saved_to=today))) == 4
    assert ids(view(studio, saved_to="2001-01-01")) == []
    with pytest.warns(UserWarning, match="YYYY-MM-DD"):
        bad = view(studio, saved_from="yesterday")
    assert bad["saved_from"] is None
    # a search with the filters
    assert ids(view(studio, model="other-model"), "dog OR cat") == [cat]
    assert ids(view(studio, sort="Oldest first"), "dog") == [dog_lake, dog_grass]
    # the model menu lists the gallery's models
    assert set(studio.library.model_choices().choices) >= {(m, m) for m in ("other-model", studio.model_name)} or \
        {"other-model", studio.model_name} <= {c[0] if isinstance(c, tuple) else c
                                                for c in studio.library.model_choices().choices}
    # a view the session never made (junk) is the default view
    for junk in (None, "x", {"trash": "yes", "sort": "DROP", "kind": "../x", "saved_from": "1; --"}):
        assert studio.library.clean_view(junk) == gallery_search.default_view()


# ------------------------------------------------------------------ edit, history
def test_edit_caption_keeps_history(studio, items):
    dog_lake = items[0]
    _, page, out = grid(studio, "", view(studio, sort="Oldest first"))
    details, selected, actions, video, seek, shown, title = studio.library.open_item(out[3], page, pick(0))
    assert selected == dog_lake and actions.visible is True
    edit, download, restore, file, msg = studio.library.item_tools(selected)
    assert edit.value == CAPTIONS[0] and restore.visible is False and download.visible is True
    assert 'data-caption="a dog runs by the lake"' in details
    # confidence and tags: in the attention player's header (not twice)
    entry = shown.value["photos"][0]
    assert entry["confidence"] == 0.82 and [t["label"] for t in entry["tags"]] == ["retriever"]
    assert "Confidence 82%" not in details and "retriever" not in details
    message, details = studio.library.edit_caption(selected, "  a brown dog   runs by a lake ")
    assert "saved" in message
    assert studio.gallery.get(dog_lake)["caption"] == "a brown dog runs by a lake"
    assert "Earlier captions (1)" in details and "“a dog runs by the lake”" in details
    assert [h["caption"] for h in studio.gallery.history(dog_lake)] == [CAPTIONS[0]]
    # the search follows the new caption
    assert [it["id"] for it in studio.library.search("brown", 1)[0]["items"]] == [dog_lake]
    for bad, words in (("", "empty"), ("x" * 600, "too long"), ("a brown dog runs by a lake", "unchanged")):
        message, skipped = studio.library.edit_caption(selected, bad)
        assert words in message
    assert len(studio.gallery.history(dog_lake)) == 1
    with pytest.raises(gr.Error):
        studio.library.edit_caption(None, "a caption")


# ------------------------------------------------------------------ the attention player in the details
def test_item_details_draw_attention_in_the_browser_player(studio, items, tmp_path):
    """Issue 12: a photo item's details send the attention player's data (the photo once as a small JPEG,
    each candidate's maps as bytes), never a GIF; the saved candidate starts selected; a GIF is drawn
    only on request, for the session's item and a checked candidate index."""
    _, page, out = grid(studio, "", view(studio, sort="Oldest first"))
    details, selected, _, video, seek, shown, title = studio.library.open_item(out[3], page, pick(0))
    assert selected == items[0] and title == "Item #1 · photo0.png"
    assert video.visible == "hidden" and seek is None and shown.visible is True
    data = shown.value
    text = json.dumps(data)
    assert "image/gif" not in text and "image/gif" not in details and "<img" not in details
    assert len(text) < 20_000, len(text)
    assert data["kind"] == "item" and data["read_only"] is True and data["no_copy"] is True
    entry = data["photos"][0]
    assert entry["photo"]["src"].startswith("data:image/jpeg;base64,")
    assert (entry["photo"]["w"], entry["photo"]["h"]) == (96, 64)  # the photo's true aspect
    assert (entry["width"], entry["height"], entry["beam"], entry["chosen"]) == (96, 64, 2, 0)
    best, other = entry["candidates"]
    assert best["caption"] == CAPTIONS[0] and best["words"] == CAPTIONS[0].split()
    assert (best["attention"]["n"], best["attention"]["m"], best["attention"]["words"]) == (2, 2, 3)
    assert len(base64.b64decode(best["attention"]["levels"])) == 3 * 2 * 2
    assert other["caption"] == "a brown animal near water" and other["attention"] is None
    # the saved caption is the second candidate: it starts selected
    second = studio.gallery.save(photo((9, 99, 199)), "second.png", "a brown animal near water",
                                 candidates=[{"caption": CAPTIONS[0], "attention": ATTENTION},
                                             {"caption": "a brown animal near water", "attention": ATTENTION}])
    _, page, out = grid(studio, "", view(studio, sort="Newest first"))
    assert out[3][0] == second
    assert studio.library.open_item(out[3], page, pick(0))[5].value["photos"][0]["chosen"] == 1
    # a photo whose file went missing: the details still open, the player says so without a path
    gone = studio.gallery.save(photo((1, 2, 3)), "gone.png", "a photo that goes away")
    missing = studio.library._item_view({**studio.gallery.get(gone), "image_path": str(tmp_path / "x.png")})
    assert missing.value["photos"][0]["error"] == "The photo's file is not in the gallery."
    assert str(tmp_path) not in json.dumps(missing.value)

    # the GIF, on request only: the session's item, a checked candidate index
    gif = studio.library.animation(items[0], SimpleNamespace(_data={"candidate": 0}))
    path = Path(gif.value["path"])
    # (the File stays hidden: the page downloads it and links it beside the player's button)
    assert gif.visible == "hidden" and path.read_bytes()[:6] == b"GIF89a" and path.name.startswith("photo0")
    for junk in ({"candidate": 7}, {"candidate": "../x"}, {"candidate": None}, {}, None):
        with pytest.raises(gr.Error, match="candidates"):
            studio.library.animation(items[0], SimpleNamespace(_data=junk))
    with pytest.raises(gr.Error, match="no attention maps"):  # the second candidate has none
        studio.library.animation(items[0], SimpleNamespace(_data={"candidate": 1}))
    with pytest.raises(gr.Error, match="Open a photo"):
        studio.library.animation(None, SimpleNamespace(_data={"candidate": 0}))


# ------------------------------------------------------------------ delete, undo, trash
def test_delete_undo_trash_restore_and_empty(studio, items):
    dog_lake, dog_grass, children, cat = items
    message, selected, actions, details, undo, last = studio.library.delete(dog_lake, True)
    assert "Deleted item" in message and selected is None and undo.visible is True and last == dog_lake
    assert dog_lake not in [it["id"] for it in studio.library.search("", 1)[0]["items"]]
    message, undo, last = studio.library.undo(last)
    assert "back" in message and undo.visible is False and last is None
    assert studio.gallery.get(dog_lake) is not None
    assert studio.library.undo(None)[0] == "Nothing to undo."
    # two deletes, then the Trash view lists them, Restore brings one back
    studio.library.delete(dog_lake, True)
    studio.library.delete(cat, True)
    trash = view(studio, which="Trash")
    found, page, out = grid(studio, "", trash)
    assert [it["id"] for it in found["items"]] == [cat, dog_lake] and "in the trash" in out[1]
    assert gallery_search.trash_controls(trash).visible is True
    assert gallery_search.trash_controls(view(studio)).visible is False
    details, selected, actions, *_ = studio.library.open_item(out[3], page, pick(1))
    assert selected == dog_lake and actions.visible is False and "In the trash since" in details
    assert studio.library.item_tools(selected)[2].visible is True  # Restore
    details, nothing, actions, restore, player, seek = studio.library.clear_item()  # back to Saved items
    assert nothing is None and actions.visible is False and restore.visible is False and "Pick an item" in details
    message, selected, _ = studio.library.restore(selected)
    assert "back in the gallery" in message and studio.gallery.get(dog_lake) is not None
    # Empty trash: only with the user's yes
    for answer in (False, None, "true", 1):
        studio.library.empty_trash(answer)
        assert studio.gallery.get(cat, include_trash=True) is not None
    message = studio.library.empty_trash(True)
    assert "1 item removed for good" in message
    assert studio.gallery.get(cat, include_trash=True) is None
    assert grid(studio, "", trash)[2][1] == "The trash is empty."


# ------------------------------------------------------------------ download, export
def test_download_carries_the_caption_in_its_metadata(studio, items, tmp_path):
    from captioner.metadata import read_caption

    dog_lake = items[0]
    file, message = studio.library.download(dog_lake)
    (path,) = [Path(f if isinstance(f, str) else f["path"]) for f in file.value]
    assert file.visible is True and path.is_file()
    made = [p for p in studio.library.downloads.rglob("*") if p.is_file()]  # made in the studio's own folder
    assert [p.read_bytes() for p in made] == [path.read_bytes()]
    assert path.name == "photo0-captioned.png" and "has the caption" in message
    meta = read_caption(path)
    assert CAPTIONS[0] in json.dumps(meta), meta
    with Image.open(path) as got, Image.open(studio.gallery.get(dog_lake)["image_path"]) as kept:
        assert got.size == kept.size and got.convert("RGB").tobytes() == kept.convert("RGB").tobytes()
    # a GIF cannot hold the caption: the photo as it is, and an XMP sidecar beside it
    gif_id = studio.gallery.save(str(_gif(tmp_path / "anim.gif")), "anim.gif", "a blinking light")
    file, message = studio.library.download(gif_id)
    paths = [Path(f if isinstance(f, str) else f["path"]) for f in file.value]
    assert [p.name for p in paths] == ["anim-captioned.gif", "anim-captioned.gif.xmp"]
    assert paths[0].read_bytes() == Path(studio.gallery.get(gif_id)["image_path"]).read_bytes()
    assert "a blinking light" in paths[1].read_text(encoding="utf-8") and "cannot hold a caption" in message
    # nothing for an item not in the gallery, nor for a forged id
    for bad in (None, 9999, "../../etc/passwd", -1):
        with pytest.raises(gr.Error):
            studio.library.download(bad)


def test_export_csv_has_no_attention(studio, items):
    file, message = studio.library.export("csv")
    path = Path(file.value if isinstance(file.value, str) else file.value["path"])
    text = path.read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 4 and "Exported 4 items as CSV" in message
    assert "attention" not in text and "0.25" not in text
    file, _ = studio.library.export("json")
    data = Path(file.value if isinstance(file.value, str) else file.value["path"]).read_text(encoding="utf-8")
    assert "attention" in data


# ------------------------------------------------------------------ the browser's values
def test_forged_ids_and_paths_are_refused(studio, items, tmp_path):
    dog_lake = items[0]
    _, page, out = grid(studio, "")
    ids = out[3]
    for index in (-1, 99, "99", None, 0.5, [0], "../x", True):
        details, selected, *_ = studio.library.open_item(ids, page, pick(index))
        assert selected is None, index
    # a page the session never had cannot open an item it does not list
    assert studio.library.open_item([], page, pick(0))[1] is None
    # a path from the browser is never imported
    foreign = tmp_path / "elsewhere" / "x.png"
    foreign.parent.mkdir()
    photo((1, 2, 3)).save(foreign)
    studio.upload_dir = (tmp_path / "gradio").resolve()
    studio.upload_dir.mkdir()
    with pytest.raises(gr.Error, match="uploaded"):
        studio.library.import_folder([str(foreign)])
    with pytest.raises(gr.Error, match="uploaded"):
        studio.library.import_folder([str(studio.upload_dir / ".." / "elsewhere" / "x.png")])
    assert studio.gallery.count() == 4
    # the file to download is the gallery's own, whatever the item says
    item = studio.gallery.get(dog_lake)
    assert studio.library._image_file({**item, "image_path": str(foreign)}) is None
    assert studio.library._image_file({**item, "image_path": str(studio.gallery.images_dir / ".." / "gallery.db")}) is None


# ------------------------------------------------------------------ import a folder
def test_import_a_folder(studio, items, tmp_path):
    uploads = (tmp_path / "gradio").resolve()
    studio.upload_dir = uploads
    files = []
    for i, color in enumerate([(10, 200, 200), (250, 120, 0)]):
        p = uploads / f"u{i}" / f"new{i}.jpg"
        p.parent.mkdir(parents=True)
        photo(color).save(p)
        files.append(str(p))
    broken = uploads / "u9" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    notes = uploads / "u8" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text("hello")
    message = studio.library.import_folder(files + [str(broken), str(notes)], progress=lambda *a, **k: None)
    assert "Imported **2** photos" in message and "1 could not be read" in message and "broken.jpg" in message
    assert "1 file that is not a photo ignored" in message
    assert "2 files that are not photos ignored" in gallery_import.import_message({"saved": ["a.jpg"]}, 2)
    assert str(uploads) not in message and str(studio.library.imports) not in message  # names, not paths
    assert studio.gallery.count() == 6
    # again: the same photos are skipped
    message = studio.library.import_folder(files, progress=lambda *a, **k: None)
    assert "Imported **0** photos" in message and "2 already in the gallery" in message
    assert studio.gallery.count() == 6
    assert not any(studio.library.imports.iterdir())  # the staging folder is gone


def test_a_read_only_gallery_changes_nothing(captioner, items, studio):
    ro = Studio(captioner, studio.gallery, read_only=True)
    dog_lake = items[0]
    studio.gallery.delete(items[3])
    assert "read-only" in ro.library.edit_caption(dog_lake, "another caption")[0]
    assert "read-only" in ro.library.delete(dog_lake, True)[0]
    assert "read-only" in ro.library.undo(items[3])[0]
    assert "read-only" in ro.library.restore(items[3])[0]
    assert "read-only" in ro.library.empty_trash(True)
    assert "read-only" in ro.library.import_folder(["x.jpg"])
    assert studio.gallery.get(dog_lake)["caption"] == CAPTIONS[0] and studio.gallery.get(items[3]) is None
    assert studio.gallery.get(items[3], include_trash=True) is not None
    _, page = ro.library.search("", 1)
    assert ro.library.open_item(ro.library.show_grid(page)[3], page, pick(0))[2].visible is False


# ------------------------------------------------------------------ by meaning, more like this
def test_find_by_meaning_ranks_items(studio, items):
    from captioner.retrieval.config import FindConfig

    v = view(studio, meaning=True)
    assert v["meaning"] is True
    found, page, out = grid(studio, "a dog by a lake", v)
    assert found["mode"] == "meaning"
    # only the items that fit well, each with its strength in words; else the page says nothing fits well
    # (the tiny test model's likelihoods are random: either may happen)
    cutoff = FindConfig().strength_cutoff
    if found["items"]:
        assert all(it["strength"] is None or it["strength"] >= cutoff for it in found["items"])
        assert "fit “a dog by a lake” well, best first" in out[1] and " match (" in out[6].value
    else:
        assert "Nothing in the gallery fits “a dog by a lake” well" in out[1] and "% match" in out[1]
    assert "score" not in out[1] and "score " not in (out[6].value or "")
    found, page, out = grid(studio, "a zzqxv dog", v)
    assert "zzqxv" in json.dumps(found.get("unknown_words", []))


def test_find_by_meaning_shows_a_readable_strength_and_cuts_off():
    from captioner.retrieval.config import FindConfig
    from captioner.retrieval.search import Match, match_strength

    config = FindConfig()
    at_cut = (np.log(config.strength_cutoff / (1 - config.strength_cutoff)) - config.strength_intercept) \
        / config.strength_slope  # the likelihood at the cutoff
    matches = [Match(1, "a.jpg", "a dog", -1.0, at_cut + 1.0, None, 0),
               Match(2, "b.jpg", "a cat", -2.0, at_cut + 0.05, None, None),
               Match(3, "c.jpg", "a bowl", -9.0, at_cut - 1.0, None, None),
               Match(4, "d.jpg", "a dog", -9.5, None, None, 1)]  # not scored, found by its words
    assert match_strength(at_cut + 1.0) > match_strength(at_cut + 0.05) >= config.strength_cutoff
    assert match_strength(at_cut - 1.0) < config.strength_cutoff and match_strength(None) is None
    items = [{"id": m.item_id, "caption": m.caption, "score": m.score, "image_hash": "0" * 64,
              "image_path": "x.jpg"} for m in matches]
    kept, closest = gallery_tab.GalleryTab._fitting(matches, items)
    assert [it["id"] for it in kept] == [1, 2, 4] and closest is None
    assert all("score" not in it for it in kept) and kept[2]["strength"] is None
    page = gallery_search.grid_page_of({"query": "a dog", "total": 3, "items": kept, "mode": "meaning"})
    html = library_render.match_list(page["items"], page)
    assert "strong match (" in html or "fair match (" in html
    assert "matched by its words" in html and "-1.0" not in html
    assert "3** items fit “a dog” well" in gallery_search.page_line(page)
    # nothing fits well: the page says so
    kept, closest = gallery_tab.GalleryTab._fitting(matches[2:3], items[2:3])
    assert kept == [] and 0 < closest < config.strength_cutoff
    line = gallery_search.page_line(gallery_search.grid_page_of({"query": "food on a plate", "items": [],
                                                           "mode": "meaning", "closest": closest}))
    assert line.startswith("Nothing in the gallery fits “food on a plate” well")


def test_more_like_this(studio, items):
    page = studio.library.similar(items[0])
    assert page["mode"] == "similar" and items[0] not in [it["id"] for it in page["items"]]
    out = studio.library.show_grid(page)
    assert "most like item" in out[1]
    with pytest.raises(gr.Error):
        studio.library.similar(None)


def test_the_tab_builds(studio):
    demo = studio.build()
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert "search" in public and not {"delete", "undo", "download", "import_folder", "empty_trash"} & public
    html_ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"search-box", "gallery-sort", "gallery-view", "copy-caption", "download-photo", "gallery-undo",
            "empty-trash", "import-folder", "caption-edit"} <= html_ids
    folder = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "import-folder")
    assert folder.file_count == "directory"
    assert html.escape("dog OR cat") in html.escape(library_render.SEARCH_HELP)
