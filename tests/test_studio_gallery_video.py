"""The studio's Gallery tab with video items (issue 14): a search shows the matched shot's time in the grid,
and opening a video item shows a player (the studio's own copy of the file) that starts at that shot, in the
item modal (issue 12); the Video tab's Save refuses the same video with the same shots twice (issue 12)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from captioner.pipeline import Captioner
from captioner.storage import Gallery
from captioner.studio import render
from captioner.studio.app import Studio
from test_studio_video import FPS, two_photos, write_video

SEGMENTS = [
    {"start": 0.0, "end": 2.0, "caption": "a red ball on a wall", "candidates": []},
    {"start": 2.0, "end": 4.0, "caption": "a blue kite over a field", "candidates": []},
]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Two photos, 2 s each at 10 fps."""
    return write_video(tmp_path_factory.mktemp("clip") / "two shots.mp4",
                       [p for p in two_photos() for _ in range(2 * FPS)])


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    return Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path_factory.mktemp("gallery-video")))


@pytest.fixture(scope="module")
def items(studio, clip):
    photo = studio.gallery.save(two_photos()[0], "red.png", "a kite on a beach")
    video = studio.gallery.save_video(clip, clip.name, SEGMENTS, poster=two_photos()[0], duration=4.0)
    return photo, video


def grid_for(studio, query):
    found, page = studio.library.search(query, 1)
    grid, _, _, ids, *_ = studio.library.show_grid(page)
    return page, ids, [entry["caption"] for entry in grid.value]


def test_search_shows_the_matched_shot_time(studio, items):
    photo, video = items
    page, ids, labels = grid_for(studio, "field")  # only the second shot has this word
    assert ids == [video]
    assert labels == [f"a blue kite over a field · {render._clock(2.0)}–{render._clock(4.0)}"]
    # a word the photo and a shot have: the photo keeps its caption, the video shows its shot's time
    page, ids, labels = grid_for(studio, "kite")
    assert sorted(ids) == sorted(items)
    by_id = dict(zip(ids, labels))
    assert by_id[photo] == "a kite on a beach"
    assert by_id[video].endswith(f" · {render._clock(2.0)}–{render._clock(4.0)}")
    # browsing (no search): the video's own caption, no time
    page, ids, labels = grid_for(studio, "")
    assert dict(zip(ids, labels))[video] == "a red ball on a wall · a blue kite over a field"


def test_opening_a_found_video_plays_the_studio_copy_from_the_shot(studio, items, clip):
    _, video = items
    page, ids, _ = grid_for(studio, "field")
    details, selected, actions, player, seek, view, title = studio.library.open_item(
        ids, page, SimpleNamespace(index=0))
    assert selected == video and player.visible is True
    # the gallery keeps no attention maps for a video's shots: no attention player, the title says video
    assert view.visible == "hidden" and not view.value["photos"] and title == f"Item #{video} (video) · two shots.mp4"
    shown = Path(player.value["path"])  # where Gradio serves it from (its cache, copied from ours)
    item = studio.gallery.get(video)
    gallery_file = Path(item["video_path"]).resolve()
    # the player's file is the studio's own copy (in its temporary folder, named by the content hash),
    # never the gallery's file itself
    served = studio.video.served_video(item)
    own = (Path(tempfile.gettempdir()) / "captioner-studio" / "videos").resolve()
    assert served.resolve().parent == own and served.resolve() != gallery_file
    assert served.name == gallery_file.name == shown.name
    assert served.read_bytes() == clip.read_bytes() == shown.read_bytes()
    assert not shown.resolve().is_relative_to(studio.gallery.folder.resolve())
    assert player.value["orig_name"] == served.name
    # it starts at the best matched shot; that shot is marked in the details, every shot has its start
    assert seek == {"t": 2.0, "file": served.name}
    assert details.count('class="shot-time"') == 2 and 'data-start="2.000"' in details
    assert 'class="item-shot matched" data-start="2.000"' in details
    assert player.subtitles is not None and Path(player.subtitles["path"]).suffix == ".vtt"
    # show_item (the three values it always had) stays the same
    assert studio.library.show_item(ids, SimpleNamespace(index=0))[1] == video
    # opened from the plain grid (no search): the player starts at the beginning
    page, ids, _ = grid_for(studio, "")
    i = ids.index(video)
    details, selected, _, player, seek, view, _ = studio.library.open_item(ids, page, SimpleNamespace(index=i))
    assert player.visible is True and seek is None and "matched" not in details


def test_a_photo_has_no_player_and_bad_picks_show_nothing(studio, items):
    photo, video = items
    page, ids, _ = grid_for(studio, "beach")
    details, selected, _, player, seek, view, _ = studio.library.open_item(ids, page, SimpleNamespace(index=0))
    assert selected == photo and player.visible == "hidden" and not player.value and seek is None
    assert "candidate" in details or "chosen" in details
    for index in (5, -1, "../x", None):
        _, selected, _, player, seek, *_ = studio.library.open_item(ids, page, SimpleNamespace(index=index))
        assert selected is None and player.visible == "hidden" and seek is None
    # a page that is not the session's (junk) gives no start, still the player
    page, ids, _ = grid_for(studio, "field")
    for junk in (None, "x", {"items": "x"}, {"items": [{"id": video, "matched_segments": [{"idx": "1"}]}]}):
        _, _, _, player, seek, *_ = studio.library.open_item(ids, junk, SimpleNamespace(index=0))
        assert player.visible is True and seek is None


def test_only_gallery_video_files_are_served(studio, items, tmp_path):
    _, video = items
    item = studio.gallery.get(video)
    outside = tmp_path / ("a" * 64 + ".mp4")
    outside.write_bytes(b"not the gallery's")
    assert studio.video.served_video({**item, "video_path": str(outside)}) is None
    sneaky = studio.gallery.videos_dir / ".." / "gallery.db"
    assert studio.video.served_video({**item, "video_path": str(sneaky)}) is None
    assert studio.video.served_video({**item, "video_path": None}) is None
    # a video file gone from the gallery: details without a player
    assert studio.video.item_player({**item, "video_path": str(tmp_path / "gone.mp4")})[0].visible == "hidden"


@pytest.mark.slow
def test_found_video_in_the_browser(tiny_model_dir, tmp_path, clip):
    """Search a shot's word, the grid shows its time, opening the item plays from that shot, a click on a
    shot in the details seeks the player there."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("chromium is not installed")
    from playwright import sync_api

    from studio_server import start_studio, stop_studio

    with Gallery(tmp_path / "gallery") as g:
        g.save_video(clip, clip.name, SEGMENTS, poster=two_photos()[0], duration=4.0)
    proc, url = start_studio(tiny_model_dir, tmp_path / "gallery", tmp_path / "studio.log")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 1000})
                page.set_default_timeout(60_000)
                sync_api.expect.set_options(timeout=60_000)
                page.goto(url)
                page.get_by_role("tab", name="Gallery").click()
                # the tab's own listing first: a search sent while it loads can be overwritten by it
                sync_api.expect(page.locator("#page-line")).to_contain_text("1 item saved")
                page.fill("#search-box textarea", "field")
                page.click("#search-button")
                sync_api.expect(page.locator("#page-line")).to_contain_text("matching")
                sync_api.expect(page.locator("#gallery-grid")).to_contain_text("0:02.0–0:04.0")
                page.locator("#gallery-grid .thumbnail-item").first.click()
                sync_api.expect(page.locator("#item-details .item-shot")).to_have_count(2)
                video = page.locator("#item-player video")
                sync_api.expect(video).to_have_count(1)
                assert "/captioner-studio/videos/" not in (video.get_attribute("src") or "")
                page.wait_for_function("(() => { const v = document.querySelector('#item-player video');"
                                       " return v && v.readyState >= 1 && Math.abs(v.currentTime - 2) < 0.2; })()")
                page.locator("#item-details .item-shot").first.click()
                page.wait_for_function("document.querySelector('#item-player video').currentTime < 0.2")
                # in the item modal; no attention player (a video's shots keep no attention maps); Escape
                # closes the modal and pauses the video
                sync_api.expect(page.locator("#item-modal")).to_be_visible()
                sync_api.expect(page.locator("#item-view")).to_be_hidden()
                page.evaluate("document.querySelector('#item-player video').play().catch(() => {})")
                page.keyboard.press("Escape")
                sync_api.expect(page.locator("#item-modal")).to_be_hidden()
                assert page.evaluate("document.querySelector('#item-player video').paused")
            finally:
                browser.close()
    finally:
        stop_studio(proc)


def test_saving_the_same_video_twice_is_refused_in_the_video_tab(studio, clip, monkeypatch):
    """Issue 12: the Video tab's Save, pressed twice for the same captioned video, saves it once; the second
    press says the video is already in the gallery (the gallery's DuplicateItemError), naming the item."""
    from captioner.studio.values import save_message

    monkeypatch.setattr(studio, "upload_dir", None)  # the test clip is not a Gradio upload
    result, state = studio.video.caption(str(clip), 1, 6, progress=lambda *a, **k: None)
    assert result["error"] is None and result["segments"]
    before = studio.gallery.count()
    first = studio.video.save(state)
    assert first["id"] is not None and studio.gallery.count() == before + 1
    again = studio.video.save(state)
    assert again["id"] is None and studio.gallery.count() == before + 1
    assert again["error"] == (f"{clip.name} is already in the gallery with these shots and captions "
                              f"(item {first['id']}); it was not saved again")
    assert save_message(again).startswith("⚠️ ") and f"item {first['id']}" in save_message(again)
    # the same video captioned into other shots is another item
    state["segments"] = state["segments"][:1]
    assert studio.video.save(state)["id"] not in (None, first["id"])
