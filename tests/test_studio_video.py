"""The studio's Video tab: its handlers in-process on a small generated clip, and one end-to-end call
through gradio_client against a studio subprocess (marked slow)."""
from __future__ import annotations

import html
import io
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import av
import gradio as gr
import pytest
from PIL import Image, ImageDraw

from captioner.pipeline import Captioner
from captioner.storage import Gallery
from captioner.studio import video_tab
from captioner.studio.app import Studio

W, H, FPS = 320, 240, 10


def write_video(path: Path, frames, fps: int = FPS) -> Path:
    """`frames` (PIL images) into `path`: H.264, yuv420p (what browsers play)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height = frames[0].size
        s.pix_fmt, s.options = "yuv420p", {"crf": "18", "preset": "ultrafast"}
        for img in frames:
            for p in s.encode(av.VideoFrame.from_image(img)):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def two_photos() -> list[Image.Image]:
    out = []
    for bg, fg, shape in (((200, 30, 30), (250, 250, 80), "ellipse"), ((20, 40, 190), (240, 240, 240), "rectangle")):
        img = Image.new("RGB", (W, H), bg)
        getattr(ImageDraw.Draw(img), shape)((W // 4, H // 4, 3 * W // 4, 3 * H // 4), fill=fg)
        out.append(img)
    return out


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> Path:
    """Stands for Gradio's upload folder."""
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def clip(uploads) -> Path:
    """Two photos, 2 s each at 10 fps, 320x240."""
    folder = uploads / "0123abcd"
    folder.mkdir()
    return write_video(folder / "two shots.mp4", [p for p in two_photos() for _ in range(2 * FPS)])


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory, uploads):
    s = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path_factory.mktemp("video-gallery")))
    s.upload_dir = uploads.resolve()
    return s


class Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, value, desc=None, **kwargs):
        self.calls.append((value, desc))


@pytest.fixture(scope="module")
def captioned(studio, clip):
    progress = Progress()
    result, state = studio.video.caption(str(clip), 3, 8, progress=progress)
    return result, state, progress


def test_caption_equals_the_engine(studio, clip, captioned):
    result, state, progress = captioned
    expected = studio.captioner.caption_video(clip, beam_size=3, max_len=8, name=clip.name)
    assert expected.error is None and len(expected.segments) == 2
    assert result["error"] is None and result["name"] == clip.name
    assert result["beam_size"] == 3 and result["max_len"] == 8
    got = result["segments"]
    assert [(s["start"], s["end"], s["caption"]) for s in got] == \
        [(round(s.start, 3), round(s.end, 3), s.caption) for s in expected.segments]
    assert got[1]["start"] == pytest.approx(2.0, abs=0.11)
    for seg, exp in zip(got, expected.segments):
        assert [c["caption"] for c in seg["candidates"]] == [c.caption for c in exp.candidates]
        assert 1 <= len(seg["candidates"]) <= 3
    # the session keeps each shot's captioned frame (small) and the candidates with attention
    for entry in state["segments"]:
        with Image.open(io.BytesIO(entry["frame"])) as img:
            assert max(img.size) <= 448
        assert entry["candidates"][0].attention is not None
    # the progress bar moved through the stages and ended on the shots
    descs = [d for _, d in progress.calls]
    assert any("shots" in (d or "") for d in descs) and progress.calls[-1][0] == pytest.approx(1.0)


def test_player_subtitles_and_shots(studio, captioned):
    import webvtt

    from captioner.video.subtitles import timestamp

    result, state, _ = captioned
    status, player, shots, cards, start, save_btn, _ = studio.video.show(state)
    assert "2 shots" in status
    assert player.subtitles is not None
    vtt = Path(player.subtitles["path"])
    # the subtitle file is the server's own, in its temporary folder
    assert vtt.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()) and vtt.suffix == ".vtt"
    parsed = webvtt.read(str(vtt))
    assert [c.text for c in parsed] == [s["caption"] for s in result["segments"]]
    assert [(c.start, c.end) for c in parsed] == \
        [(timestamp(s["start"]), timestamp(s["end"])) for s in result["segments"]]
    assert shots.visible is not False and len(shots.value) == 2
    assert [shot["caption"] for shot in shots.value] == [video_tab.shot_label(s) for s in result["segments"]]
    assert all("confidence" in s for s in result["segments"])  # shown in the list when calibrated
    assert cards["kind"] == "shot" and start == 0.0 and save_btn.visible is True
    assert [c["caption"] for c in cards["photos"][0]["candidates"]] == \
        [c["caption"] for c in result["segments"][0]["candidates"]]
    # clicking the second shot: its frame and candidates for the attention player, and its start time
    cards2, start2 = studio.video.pick_shot(state, SimpleNamespace(index=1))
    assert start2 == result["segments"][1]["start"]
    (shot,) = cards2["photos"]
    assert shot["photo"]["src"].startswith("data:image/jpeg") and shot["index"] == 1
    assert shot["candidates"][0]["caption"] == result["segments"][1]["caption"]
    assert all(c["attention"]["levels"] for c in shot["candidates"])  # the maps as data, drawn in the browser
    gif = studio.video.animation(state, SimpleNamespace(_data={"photo": 1, "candidate": 0}))
    with Image.open(gif.value if isinstance(gif.value, str) else gif.value["path"]) as anim:
        assert anim.format == "GIF" and anim.n_frames == len(result["segments"][1]["candidates"][0]["tokens"])
    # an index that is not a shot shows nothing and seeks nowhere
    assert studio.video.pick_shot(state, SimpleNamespace(index=7))[1] is None
    assert studio.video.pick_shot(state, SimpleNamespace(index="../etc"))[1] is None


def test_bad_file_gives_a_readable_error(studio, uploads):
    folder = uploads / "badbad"
    folder.mkdir(exist_ok=True)
    bad = folder / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    result, state = studio.video.caption(str(bad), 2, 8, progress=Progress())
    assert result["segments"] == [] and result["error"]
    assert result["error"].startswith("notes.mp4:") and "Traceback" not in result["error"]
    assert str(folder) not in result["error"]
    status, player, shots, cards, start, save_btn, _ = studio.video.show(state)
    assert "notes.mp4" in status and cards["error"] and "notes.mp4" in cards["message"]
    assert start is None and save_btn.visible is False
    # a photo is not a video either
    photo = folder / "still.mp4"
    two_photos()[0].save(photo, format="PNG")
    result, _ = studio.video.caption(str(photo), 2, 8, progress=Progress())
    assert result["error"] and result["segments"] == []
    # nothing dropped: a message, no error
    result, state = studio.video.caption(None, 2, 8, progress=Progress())
    assert result["segments"] == [] and "Add a video" in result["message"]


def test_a_path_that_is_not_an_upload_is_refused(studio, tmp_path):
    outside = write_video(tmp_path / "elsewhere.mp4", [p for p in two_photos() for _ in range(5)])
    with pytest.raises(gr.Error, match="uploaded to the studio"):
        studio.video.caption(str(outside), 2, 8, progress=Progress())
    with pytest.raises(gr.Error):
        studio.video.caption(str(studio.upload_dir / ".." / "elsewhere.mp4"), 2, 8, progress=Progress())


def test_save_video_to_the_gallery(studio, clip, captioned):
    result, state, _ = captioned
    saved = studio.video.save(state)
    assert saved["id"] is not None and saved["segments"] == 2, saved
    item = studio.gallery.get(saved["id"])
    assert item["kind"] == "video" and item["original_name"] == clip.name
    assert (item["width"], item["height"]) == (W, H) and item["beam_size"] == 3
    assert item["duration"] == pytest.approx(4.0, abs=0.11)
    assert Path(item["video_path"]).read_bytes() == clip.read_bytes()
    assert [(s["start"], s["end"], s["caption"]) for s in item["segments"]] == \
        [(s["start"], s["end"], s["caption"]) for s in result["segments"]]
    assert [c["caption"] for c in item["segments"][0]["candidates"]] == \
        [c["caption"] for c in result["segments"][0]["candidates"]]
    with Image.open(item["image_path"]) as poster:  # the first shot's frame
        assert poster.size[0] > 160 and poster.getpixel((5, 5))[0] > 150  # the red picture
    # the Gallery tab's details of the item: its shots with their times and captions
    details = studio.library.show_item([saved["id"]], SimpleNamespace(index=0))[0]
    assert "(video)" in details and details.count('class="shot-time"') == 2
    assert all(html.escape(s["caption"]) in details for s in result["segments"])
    # nothing captioned: a readable refusal, nothing stored
    count = studio.gallery.count()
    with pytest.warns(UserWarning, match="caption a video first"):
        assert studio.video.save({"segments": []})["id"] is None
    assert studio.gallery.count() == count


@pytest.mark.slow
def test_caption_video_over_http(tiny_model_dir, tmp_path, clip):
    from gradio_client import Client, handle_file

    from studio_server import start_studio, stop_studio

    proc, url = start_studio(tiny_model_dir, tmp_path / "gallery", tmp_path / "studio.log")
    try:
        c = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        result = c.predict(handle_file(str(clip)), 2, 8, api_name="/caption_video")
        assert result["error"] is None and len(result["segments"]) == 2
        assert result["segments"][1]["start"] == pytest.approx(2.0, abs=0.11)
        saved = c.predict(api_name="/save_video")
        assert saved["id"] is not None and saved["segments"] == 2
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"\0" * 4096)
        result = c.predict(handle_file(str(bad)), 2, 8, api_name="/caption_video")
        assert result["segments"] == [] and result["error"].startswith("bad.mp4:")
    finally:
        stop_studio(proc)


@pytest.mark.slow
def test_video_tab_in_the_browser(tiny_model_dir, tmp_path, clip):
    """Upload, caption, the subtitle track, a click on a shot seeks the player, save."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("chromium is not installed")
    from playwright import sync_api

    from studio_server import start_studio, stop_studio

    proc, url = start_studio(tiny_model_dir, tmp_path / "gallery", tmp_path / "studio.log")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 1000})
                page.set_default_timeout(60_000)
                sync_api.expect.set_options(timeout=60_000)
                page.goto(url)
                page.get_by_role("tab", name="Video").click()
                assert page.get_by_role("tab").all_inner_texts() == ["Caption", "Video", "Gallery", "Imagine", "Models"]
                page.locator("#video-file input[type=file]").set_input_files(str(clip))
                sync_api.expect(page.locator("#video-file")).to_contain_text("two shots")
                page.click("#video-caption-button")
                sync_api.expect(page.locator("#video-status")).to_contain_text("2 shots")
                sync_api.expect(page.locator("#video-candidates .pv-card").first).to_be_visible()
                sync_api.expect(page.locator("#video-candidates .pv-heat")).to_have_attribute("data-drawn", re.compile(r"\d+"))
                track = page.locator("#video-player video track")
                sync_api.expect(track).to_have_count(1)
                assert track.get_attribute("src").startswith(url.rstrip("/") + "/gradio_api/file=")
                shots = page.locator("#video-shots .thumbnail-item")
                sync_api.expect(shots).to_have_count(2)
                shots.nth(1).click()
                sync_api.expect(page.locator("#video-candidates .pv-name")).to_contain_text("Shot 2")
                page.wait_for_function("Math.abs(document.querySelector('#video-player video').currentTime - 2) < 0.2")
                page.click("#video-save-button")
                sync_api.expect(page.locator("#video-save-message")).to_contain_text("as gallery item #1")
            finally:
                browser.close()
    finally:
        stop_studio(proc)
