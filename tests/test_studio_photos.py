"""The studio's Caption tab in-process (issue 12): the attention player's data (attention as bytes, the
photo once, small), the list of photos (replace or add), saving all of them, the GIF on request, the
warnings and the honest status.  The browser side is tests/test_browser.py."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oracles.photos import FLICKR

FLICKR_IMAGES = FLICKR / "images"


def make_photo(path: Path, size=(320, 240), color=(40, 120, 40)) -> Path:
    img = Image.new("RGB", size, color)
    for x in range(size[0] // 3, 2 * size[0] // 3):
        for y in range(size[1] // 4, 3 * size[1] // 4):
            img.putpixel((x, y), (200, 60 + x % 100, 30 + y % 50))
    img.save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    return [make_photo(folder / f"p{i}.jpg", color=(30 * i, 120, 40)) for i in range(3)]


@pytest.fixture(scope="module")
def captioner(tiny_model_dir):
    from captioner.pipeline import Captioner
    return Captioner.load(tiny_model_dir)


@pytest.fixture()
def studio(captioner, tmp_path):
    from captioner.storage import Gallery
    from captioner.studio.app import Studio
    studio = Studio(captioner, Gallery(tmp_path / "gallery"))
    studio.upload_dir = None  # the photos here are test files, not uploads
    return studio


class Event:
    """What Gradio hands a handler for the player's trigger('submit' | 'download', data)."""

    def __init__(self, data):
        self._data = data


def test_display_size_keeps_the_aspect_and_caps_it():
    from captioner.studio import player

    assert player.display_size(500, 375) == (448, 336, False)
    assert player.display_size(224, 224) == (224, 224, False)  # never bigger than the photo
    w, h, squeezed = player.display_size(20000, 100)  # a panorama: still a usable picture
    assert squeezed and w / h == pytest.approx(player.MAX_DISPLAY_ASPECT, rel=0.02) and h >= 64
    w, h, squeezed = player.display_size(100, 20000)
    assert squeezed and h / w == pytest.approx(player.MAX_DISPLAY_ASPECT, rel=0.02)
    assert player.display_size(1, 1)[:2] == (player.MIN_SIDE, player.MIN_SIDE)


def test_attention_levels_are_bytes_per_word_scaled_like_the_frames():
    import torch

    from captioner.decoding.candidate import Candidate
    from captioner.studio import player

    maps = torch.rand(3, 4, 4)
    maps[1] = 0.25  # a flat map: the middle level everywhere
    cand = Candidate(["a", "dog", "runs"], [4, 5, 6, 2], -3.0, maps)
    att = player.attention_levels(cand)
    assert (att["n"], att["m"], att["words"]) == (4, 4, 3)
    levels = np.frombuffer(base64.b64decode(att["levels"]), np.uint8).reshape(3, 4, 4)
    for w in (0, 2):
        assert levels[w].min() == 0 and levels[w].max() == 255
        assert np.unravel_index(levels[w].argmax(), (4, 4)) == np.unravel_index(int(maps[w].argmax()), (4, 4))
    assert set(levels[1].ravel()) == {128}
    data = player.candidate_data(cand)
    assert data["words"] == ["a", "dog", "runs"] and data["caption"] == "a dog runs" and data["confidence"] is None
    cand.attention = None
    assert player.candidate_data(cand)["attention"] is None


def test_player_data_is_small_at_beam_10(studio, photos):
    """The old cards sent an animated GIF and a strip per candidate: megabytes at beam 10."""
    result, state = studio.photos.caption([str(photos[0])], 10, 8)
    status, view, _ = studio.photos.show_results(state)
    assert "Captioned 1 of 1" in status and "engine took" in status
    (photo,) = view["photos"]
    assert len(photo["candidates"]) == len(result["photos"][0]["candidates"]) >= 2
    for cand, sent in zip(state["photos"][0]["candidates"], photo["candidates"]):
        att = sent["attention"]
        assert att["words"] == len(cand.tokens) == len(sent["words"])
        assert len(base64.b64decode(att["levels"])) == att["words"] * att["n"] * att["m"]
    assert photo["photo"]["src"].startswith("data:image/jpeg;base64,")
    assert (photo["photo"]["w"], photo["photo"]["h"]) == (320, 240)  # the true aspect ratio
    size = len(json.dumps(view).encode())
    assert size < 50_000, size
    assert "data:image/gif" not in json.dumps(view)  # no animation drawn on the server


@pytest.mark.slow
@pytest.mark.skipif(not FLICKR_IMAGES.is_dir(), reason="needs the Flickr8k photos")
def test_player_data_of_the_shipped_model_at_beam_10_is_under_50_kb(tmp_path, shipped_captioner):
    from captioner.storage import Gallery
    from captioner.studio.app import Studio

    studio = Studio(shipped_captioner, Gallery(tmp_path / "g"))
    studio.upload_dir = None
    photo = sorted(FLICKR_IMAGES.glob("*.jpg"))[0]
    _, state = studio.photos.caption([str(photo)], 10, 20)
    _, view, _ = studio.photos.show_results(state)
    assert len(view["photos"][0]["candidates"]) == 10
    size = len(json.dumps(view).encode())
    assert size < 50_000, size  # 0.1.0 sent 3.9 MB of GIFs for this result


def test_warnings_for_a_1x1_image_and_a_panorama(studio, tmp_path):
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (90, 120, 200)).save(one)
    pano = tmp_path / "pano.png"
    Image.new("RGB", (20000, 100), (90, 120, 200)).save(pano)
    result, state = studio.photos.caption([str(one), str(pano)], 2, 5)
    by_name = {p["name"]: p for p in result["photos"]}
    assert any("tiny image" in w for w in by_name["one.png"]["warnings"])
    assert any("aspect" in w for w in by_name["pano.png"]["warnings"])
    _, view, _ = studio.photos.show_results(state)
    shown = {p["name"]: p for p in view["photos"]}
    assert shown["pano.png"]["photo"]["squeezed"] and shown["pano.png"]["photo"]["h"] >= 64
    assert shown["one.png"]["warnings"] == by_name["one.png"]["warnings"]
    for p in view["photos"]:
        assert "confidence" in p and "tags" in p
        assert all("confidence" in c for c in p["candidates"])


def test_a_new_drop_replaces_the_list_or_adds_to_it(studio, photos):
    _, state = studio.photos.caption([str(photos[0]), str(photos[1])], 2, 5)
    keys = [p["key"] for p in state["photos"]]
    result, replaced = studio.photos.caption([str(photos[2])], 2, 5, False, state)
    assert [p["name"] for p in replaced["photos"]] == [photos[2].name]
    assert result["photos"][0]["index"] == 0
    result, added = studio.photos.caption([str(photos[2])], 3, 5, True, state)
    assert [p["name"] for p in added["photos"]] == [photos[0].name, photos[1].name, photos[2].name]
    assert [p["key"] for p in added["photos"][:2]] == keys  # the browser keeps their edits by key
    assert result["photos"][0]["index"] == 2 and "Added to the 2 photos" in result["message"]
    assert added["selected"] == 2 and added["nonce"] > state["nonce"]
    assert [p["beam_size"] for p in added["photos"]] == [2, 2, 3]
    _, view, _ = studio.photos.show_results(added)
    assert [p["index"] for p in view["photos"]] == [0, 1, 2] and view["selected"] == 2


def test_the_list_holds_at_most_max_photos(studio, photos, monkeypatch):
    from captioner.studio import photos_tab

    monkeypatch.setattr(photos_tab, "MAX_PHOTOS", 3)
    _, state = studio.photos.caption([str(photos[0]), str(photos[1])], 1, 4)
    with pytest.warns(UserWarning, match="At most 3"):
        result, state = studio.photos.caption([str(photos[2]), str(photos[0])], 1, 4, True, state)
    assert len(state["photos"]) == 3 and "1 more photo was left out" in result["message"]


def test_save_all_saves_each_photos_choice_and_reports_duplicates(studio, photos):
    _, state = studio.photos.caption([str(p) for p in photos], 3, 6)
    cands = [p["candidates"] for p in state["photos"]]
    choices = [{"photo": 0, "candidate": 0, "text": cands[0][0].caption},
               {"photo": 1, "candidate": len(cands[1]) - 1, "text": "  my own   words for photo two "},
               {"photo": 2, "candidate": 0, "text": ""}]
    result = studio.photos.save_all(state, Event({"choices": choices}))
    assert result["saved"] == 3 and "Saved 3 of 3" in result["message"]
    ids = [r["id"] for r in result["results"]]
    assert studio.gallery.count() == 3
    assert studio.gallery.get(ids[0])["caption"] == cands[0][0].caption
    assert studio.gallery.get(ids[1])["caption"] == "my own words for photo two"
    assert studio.gallery.get(ids[2])["caption"] == cands[2][0].caption
    assert "(edited)" in result["results"][1]["message"]
    assert [p["saved"]["id"] for p in state["photos"]] == ids  # shown as saved when drawn again
    _, view, _ = studio.photos.show_results(state)
    assert [p["saved"]["id"] for p in view["photos"]] == ids

    # the same photo with the same caption again: refused by the gallery with its message (the player shows
    # it under its Save button: once, no toast besides)
    again = studio.photos.save_all(state, Event({"choices": choices[:1]}))
    assert again["saved"] == 0 and again["results"][0]["id"] is None
    assert "already" in again["results"][0]["error"].lower()
    assert studio.gallery.count() == 3


def test_save_all_takes_only_indexes_into_the_sessions_list(studio, photos):
    _, state = studio.photos.caption([str(photos[0])], 2, 5)
    bad = [{"photo": -1, "candidate": 0}, {"photo": 5, "candidate": 0}, {"photo": "0/../x", "candidate": 0},
           {"photo": 0.5, "candidate": 0}, {"photo": None, "candidate": None}, {"photo": "/etc/passwd"}]
    result = studio.photos.save_all(state, Event({"choices": bad}))
    assert result["saved"] == 0 and all(r["id"] is None for r in result["results"])
    for junk in [None, "x", {"choices": "x"}, {"choices": [1, 2]}, {"choices": [{"photo": 0, "candidate": 99}]}]:
        result = studio.photos.save_all(state, Event(junk))
        assert result["saved"] == 0
    too_long = {"photo": 0, "candidate": 0, "text": "x" * 600}
    result = studio.photos.save_all(state, Event({"choices": [too_long]}))
    assert result["saved"] == 0 and "too long" in result["results"][0]["error"]
    assert studio.gallery.count() == 0
    assert studio.photos.save_all(None, Event({"choices": [{"photo": 0, "candidate": 0}]}))["saved"] == 0


def test_the_animation_gif_on_request(studio, photos):
    import gradio as gr

    _, state = studio.photos.caption([str(photos[0])], 2, 5)
    update = studio.photos.animation(state, Event({"photo": 0, "candidate": 1}))
    path = Path(update.value if isinstance(update.value, str) else update.value["path"])
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == len(state["photos"][0]["candidates"][1].tokens)
    assert path.name.startswith("p0-caption2")
    for bad in [{"photo": 3, "candidate": 0}, {"photo": 0, "candidate": 9}, {"photo": "../x"}, None]:
        with pytest.raises(gr.Error):
            studio.photos.animation(state, Event(bad))


def test_player_assets_ship_with_the_package():
    from captioner.studio import player, render

    js = player.player_js()
    for needed in ("watch(", "trigger(\"submit\"", "trigger(\"download\"", "pv-heat", "captionerPlayers"):
        assert needed in js
    assert ".pv-overview" in player.player_css() and ".pv-overview" in render.CSS
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "static/*.js" in text and "static/*.css" in text


def test_the_pages_caption_answers_in_one_event_without_the_queue(studio, photos):
    """One photo: one event without the queue draws the results from its own answer (no second request);
    several: the same answer through the queue (a progress bar).  Both equal /caption + show_results."""
    state, status, view, emptied = studio.photos.caption_page([str(photos[0])], 3, 8, False, None)
    # its picture, made while the engine worked, is the one the player would get afterwards
    assert view["photos"][0]["photo"] == studio.photos.view(state)["photos"][0]["photo"]
    result, _ = studio.photos.caption([str(photos[0])], 3, 8)
    assert emptied is None and "Captioned 1 of 1" in status
    assert [c["caption"] for c in view["photos"][0]["candidates"]] == [
        c["caption"] for c in result["photos"][0]["candidates"]]
    assert studio.photos.result_json(state)["photos"][0]["candidates"] == result["photos"][0]["candidates"]
    state, _, view, _ = studio.photos.caption_page_queued([str(p) for p in photos[:2]], 3, 8, True, state,
                                                          progress=lambda *a, **k: None)
    assert [p["name"] for p in view["photos"]] == [photos[0].name, photos[0].name, photos[1].name]
    assert studio.photos.result_json(state)["captioned"] == 2
    # Caption with no new photo: the status line says what to do, the list stays
    kept, status, view, _ = studio.photos.caption_page([], 3, 8, False, state)
    assert "Add one or more photos first" in status and len(view["photos"]) == 3

    demo = studio.build()
    by_elem = {getattr(c, "elem_id", None): c._id for c in demo.blocks.values()}
    page = [fn for fn in demo.fns.values() if fn.targets and fn.targets[0][0] == by_elem["caption-now"]]
    queued = [fn for fn in demo.fns.values() if fn.targets and fn.targets[0][0] == by_elem["caption-queued"]]
    assert len(page) == 1 and page[0].queue is False and page[0].api_visibility == "private"
    assert len(queued) == 1 and queued[0].queue is not False
    # the public /caption is still queued (scripts: gradio_client), one at a time
    (api,) = [fn for fn in demo.fns.values() if fn.api_name == "caption"]
    assert api.queue is not False and api.concurrency_limit == 1


def test_warm_up_captions_nothing_of_the_users(studio):
    studio.photos.warm_up()
    assert studio.gallery.search("", page=1, per_page=5).total == 0
    assert studio.photos._engine.acquire(blocking=False)  # the lock is given back
    studio.photos._engine.release()


def test_the_direct_caption_keeps_the_sessions_list_for_the_rest_of_the_page(captioner, photos, tmp_path):
    """One photo by the Caption tab's own route (`caption_direct`, what ``POST /studio/caption`` runs): the same
    answer as the Gradio event, written into the page's session so that Save, Save all, "Add to the list"
    and the JSON accordion (`page_shown`) see it; the token is good once."""
    from types import SimpleNamespace

    from captioner.storage import Gallery
    from captioner.studio.app import Studio, host_policy, make_app
    from captioner.studio.photos_tab import NotStaged

    studio = Studio(captioner, Gallery(tmp_path / "gallery"))
    studio.upload_dir = None
    demo = studio.build()
    make_app(demo, host_policy("127.0.0.1", False), studio=studio)
    holder, sid = demo.state_holder, studio.photos._session._id
    values = holder["page"]

    def direct(photo, add=False, beam=3):
        token = json.loads(studio.photos.stage([str(photo)], SimpleNamespace(session_hash="page")))["token"]
        return studio.photos.caption_direct(token, beam, 8, add)

    answer = direct(photos[0])
    state = values[sid]
    reference, _, view, _ = studio.photos.caption_page([str(photos[0])], 3, 8, False, None)
    assert [c["caption"] for c in answer["view"]["photos"][0]["candidates"]] == [
        c["caption"] for c in view["photos"][0]["candidates"]]
    assert answer["view"]["photos"][0]["photo"] == view["photos"][0]["photo"]
    assert "Captioned 1 of 1" in answer["status"]
    status, result = studio.photos.page_shown(state)
    assert status == answer["status"] and result["photos"][0]["name"] == photos[0].name
    # added to the list: the first photo's save is kept
    saved = studio.photos.save(0, 1, "", values[sid])
    assert saved["id"] is not None
    direct(photos[1], add=True, beam=2)
    state = values[sid]
    assert [p["name"] for p in state["photos"]] == [photos[0].name, photos[1].name]
    assert state["photos"][0]["saved"]["id"] == saved["id"] and state["selected"] == 1
    assert len(state["photos"][1]["candidates"]) == 2
    both = studio.photos.save_choices([{"photo": 0, "candidate": 0, "text": ""},
                                       {"photo": 1, "candidate": 0, "text": "an edited caption"}], values[sid])
    assert both["saved"] == 2
    # replaced by a new one; a used or made-up token captions nothing
    token = json.loads(studio.photos.stage([str(photos[2])], SimpleNamespace(session_hash="page")))["token"]
    studio.photos.caption_direct(token, 3, 8, False)
    assert [p["name"] for p in values[sid]["photos"]] == [photos[2].name]
    for bad in (token, "A" * 32, None, str(photos[0])):
        with pytest.raises(NotStaged):
            studio.photos.caption_direct(bad, 3, 8, False)
    assert [p["name"] for p in values[sid]["photos"]] == [photos[2].name]
    # a photo that cannot be read: the answer and the status line say so (the page draws it like any other)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:200])
    token = json.loads(studio.photos.stage([str(broken)], SimpleNamespace(session_hash="page")))["token"]
    answer = studio.photos.caption_direct(token, 3, 8, False)
    assert answer["view"]["photos"][0]["error"] and "broken.jpg" in answer["status"]
    assert "Captioned 0 of 1" in answer["status"]

    # the page's events: the file box stages its photo; Caption runs the dispatcher; the answer's follow-up
    by_elem = {getattr(c, "elem_id", None): c._id for c in demo.blocks.values()}
    staging = [fn for fn in demo.fns.values() if fn.targets and fn.targets[0] == (by_elem["photo-files"], "change")]
    assert any(fn.fn is not None and fn.queue is False for fn in staging)
    shown = [fn for fn in demo.fns.values() if fn.targets and fn.targets[0][0] == by_elem["caption-shown"]]
    assert len(shown) == 1 and shown[0].queue is False and shown[0].api_visibility == "private"
