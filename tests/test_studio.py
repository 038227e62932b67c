"""The studio: its event handlers in-process, and end to end a real server (subprocess) driven
through its API with gradio_client (those tests are marked slow)."""
from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from oracles.photos import FLICKR
from studio_server import start_studio, stop_studio

FLICKR_IMAGES = FLICKR / "images"


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("studio")
    proc, url = start_studio(tiny_model_dir, folder / "gallery", folder / "studio.log")
    yield url, folder / "gallery"
    stop_studio(proc)


def client(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A real photo when the Flickr8k images are here, else a generated one."""
    if FLICKR_IMAGES.is_dir():
        for path in sorted(FLICKR_IMAGES.glob("*.jpg"))[:1]:
            return path
    path = tmp_path_factory.mktemp("photo") / "generated.jpg"
    img = Image.new("RGB", (320, 240), (40, 120, 40))
    for x in range(100, 220):
        for y in range(60, 180):
            img.putpixel((x, y), (200, 60 + (x - 100), 30))
    img.save(path, quality=90)
    return path


def huge_png(path: Path, width: int = 12000, height: int = 9000) -> Path:
    """A small file whose header claims an enormous picture (108 megapixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.slow
def test_api_names(studio):
    url, _ = studio
    info = client(url).view_api(print_info=False, return_format="dict")
    assert {"/caption", "/save", "/search"} <= set(info["named_endpoints"])


@pytest.mark.slow
def test_caption_save_and_search(studio, photo):
    url, gallery_dir = studio
    c = client(url)
    result = c.predict([handle_file(str(photo))], 3, 8, api_name="/caption")
    assert result["captioned"] == 1 and result["failed"] == 0
    assert result["beam_size"] == 3 and result["model"] == "tiny-test"
    (item,) = result["photos"]
    assert item["error"] is None and item["name"] == photo.name
    with Image.open(photo) as img:
        assert (item["width"], item["height"]) == img.size
    cands = item["candidates"]
    assert 1 <= len(cands) <= 3
    for cand in cands:
        assert cand["caption"] and cand["caption"] == " ".join(cand["tokens"])
        assert cand["score"] <= 0 and cand["normalized_score"] <= 0
    ranked = [cand["score"] for cand in cands]
    assert ranked == sorted(ranked, reverse=True)  # best first (tiny model: no length penalty)

    pick = len(cands) - 1
    saved = c.predict(0, pick, "", api_name="/save")
    assert isinstance(saved["id"], int), saved
    assert saved["caption"] == cands[pick]["caption"]

    word = cands[pick]["tokens"][0]
    found = c.predict(word, 1, api_name="/search")
    assert found["total"] >= 1
    assert saved["id"] in [it["id"] for it in found["items"]]
    hit = next(it for it in found["items"] if it["id"] == saved["id"])
    assert hit["caption"] == cands[pick]["caption"]
    assert hit["original_name"] == photo.name and hit["beam_size"] == 3 and hit["model_name"] == "tiny-test"
    assert [x["caption"] for x in hit["candidates"]] == [x["caption"] for x in cands]

    # the gallery on disk holds the attention maps of every candidate
    from captioner.storage import Gallery
    stored = Gallery(gallery_dir).get(saved["id"])
    assert all("attention" in x for x in stored["candidates"])
    assert len(stored["candidates"][0]["attention"]) == len(cands[0]["tokens"])


@pytest.mark.slow
def test_edited_caption_is_saved(studio, photo):
    url, _ = studio
    c = client(url)
    c.predict([handle_file(str(photo))], 2, 6, api_name="/caption")
    saved = c.predict(0, 0, "  my very own zebracorn   words ", api_name="/save")
    assert saved["caption"] == "my very own zebracorn words"
    found = c.predict("zebracorn", 1, api_name="/search")
    assert [it["id"] for it in found["items"]] == [saved["id"]]


@pytest.mark.slow
def test_bad_files_get_messages_and_the_rest_still_captioned(studio, photo, tmp_path):
    url, _ = studio
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo.read_bytes()[:300])  # a truncated JPEG
    text = tmp_path / "notes.txt"
    text.write_text("this is not a picture")
    huge = huge_png(tmp_path / "huge.png")
    c = client(url)
    result = c.predict([handle_file(str(corrupt)), handle_file(str(photo)), handle_file(str(text)),
                        handle_file(str(huge))], 1, 5, api_name="/caption")
    assert result["captioned"] == 1 and result["failed"] == 3
    by_name = {p["name"]: p for p in result["photos"]}
    assert by_name[photo.name]["error"] is None and len(by_name[photo.name]["candidates"]) == 1
    for name in ("corrupt.jpg", "notes.txt", "huge.png"):
        err = by_name[name]["error"]
        assert err and name in err and "Traceback" not in err
        assert "/tmp/gradio" not in err and str(tmp_path) not in err  # the user's file name, not a temp path
        assert by_name[name]["candidates"] == []
    assert "megapixels" in by_name["huge.png"]["error"]
    # saving a photo that failed is refused with a message; the good one can be saved
    refused = c.predict(0, 0, "", api_name="/save")
    assert refused["id"] is None and "corrupt.jpg" in refused["error"]
    assert isinstance(c.predict(1, 0, "", api_name="/save")["id"], int)
    # and the server is still alive
    assert c.predict([handle_file(str(photo))], 1, 4, api_name="/caption")["captioned"] == 1


@pytest.mark.slow
def test_nothing_to_caption_or_save(studio):
    url, _ = studio
    c = client(url)  # a fresh session: nothing captioned yet
    refused = c.predict(0, 0, "", api_name="/save")
    assert refused["id"] is None and "caption a photo first" in refused["error"]
    empty = c.predict([], 3, 8, api_name="/caption")
    assert empty["photos"] == [] and "Add one or more photos" in empty["message"]


@pytest.mark.slow
def test_search_accepts_any_text_and_pages(studio):
    url, _ = studio
    c = client(url)
    for query in ['"unbalanced', "AND OR NOT", "*", "dog's (bone)", "ünïcødé", ""]:
        found = c.predict(query, 1, api_name="/search")
        assert isinstance(found["items"], list) and found["page"] >= 1
    everything = c.predict("", 1, api_name="/search")
    ids = [it["id"] for it in everything["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert c.predict("", 999, api_name="/search")["page"] == everything["pages"]


@pytest.mark.slow
def test_serves_only_on_loopback(studio):
    url, _ = studio
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    try:  # this machine's address on its network, if it has one
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
    except OSError:
        address = None
    if not address or address.startswith("127."):
        pytest.skip("no non-loopback address to test with")
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=2).close()


# ------------------------------------------------------------------ in-process (fast)
@pytest.fixture(scope="module")
def local_studio(tiny_model_dir, tmp_path_factory):
    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio
    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path_factory.mktemp("local-gallery")))
    studio.upload_dir = None  # the photos here are test files, not uploads (see test_pasted_picture...)
    return studio


def test_build_app_names_its_api_events(tiny_model_dir, tmp_path):
    import gradio as gr

    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import build_app
    demo = build_app(Captioner.load(tiny_model_dir), Gallery(tmp_path / "g"))
    assert isinstance(demo, gr.Blocks)
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"caption", "save", "search"}
    assert demo.analytics_enabled is False


def test_handlers_caption_show_save_browse_delete_export(local_studio, photo, tmp_path):
    import gradio as gr

    studio = local_studio
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(UserWarning, match="could not be captioned"):
        result, state = studio.photos.caption([str(corrupt), str(photo)], 3, 6)
    assert [p["error"] is None for p in result["photos"]] == [False, True]
    assert "bad.png" in result["photos"][0]["error"]

    status, view, _ = studio.photos.show_results(state)
    assert "Captioned 1 of 2" in status and "bad.png" in status
    assert [p["name"] for p in view["photos"]] == ["bad.png", photo.name] and view["selected"] == 1
    assert view["photos"][0]["error"] and view["photos"][0]["candidates"] == []
    shown = view["photos"][1]["candidates"]
    assert [c["caption"] for c in shown] == [c["caption"] for c in result["photos"][1]["candidates"]]
    assert all(c["attention"]["levels"] for c in shown)  # attention as data; the browser draws it

    n = len(shown)
    second = result["photos"][1]["candidates"][-1]["caption"]
    saved = studio.photos.save(1, n - 1, "", state)
    from captioner.studio import values
    assert saved["caption"] == second and "Saved" in values.save_message(saved)
    with pytest.warns(UserWarning):
        assert studio.photos.save(0, 0, "", state)["id"] is None  # the broken photo
    with pytest.warns(UserWarning):
        assert studio.photos.save(7, 0, "", state)["id"] is None  # no such photo

    found, page_state = studio.library.search("", 1)
    assert found["items"][0]["id"] == saved["id"]
    assert page_state["items"][0]["id"] == saved["id"]  # the session's copy, drawn by show_grid
    grid, line, page, ids, prev_btn, next_btn, matches = studio.library.show_grid(page_state)
    assert ids[0] == saved["id"] and grid.value and "page 1 of 1" in line

    details, selected, *_, shown, _ = studio.library.open_item(
        ids, page_state, gr.SelectData(None, {"index": 0, "value": None, "selected": True}))
    assert selected == saved["id"] and second in details
    # every stored candidate goes to the attention player with its attention (drawn in the browser)
    (entry,) = shown.value["photos"]
    assert [c["caption"] for c in entry["candidates"]] == [c["caption"] for c in result["photos"][1]["candidates"]]
    assert all(c["attention"] and c["attention"]["words"] == len(c["words"]) for c in entry["candidates"])
    assert entry["chosen"] == n - 1 and "image/gif" not in details

    file_update, message = studio.library.export("csv")
    with open(file_update.value if isinstance(file_update.value, str) else file_update.value["path"],
              encoding="utf-8") as fh:
        assert fh.readline().startswith("id,") and second in fh.read()
    assert "Exported" in message

    message, *_ = studio.library.delete(saved["id"])
    assert "Deleted" in message and studio.gallery.get(saved["id"]) is None
    assert saved["id"] not in [i["id"] for i in studio.library.search("", 1)[0]["items"]]


def test_pasted_picture_joins_the_photos(local_studio, tmp_path, monkeypatch):
    import gradio as gr

    monkeypatch.setattr(local_studio, "upload_dir", tmp_path)  # Gradio's upload folder
    pasted, earlier = str(tmp_path / "x" / "image.png"), str(tmp_path / "y" / "a.jpg")
    files, cleared = local_studio.photos.add_pasted(pasted, [earlier])
    assert files == [earlier, pasted] and cleared is None
    skip_files, skip_paste = local_studio.photos.add_pasted(None, [earlier])  # cleared: change nothing
    assert skip_files == skip_paste == gr.skip()
    for outside in [("/tmp/elsewhere.png", [earlier]), (pasted, ["/etc/passwd"]),
                    (str(tmp_path / ".." / "z.png"), [])]:
        with pytest.raises(gr.Error, match="uploaded"):
            local_studio.photos.add_pasted(*outside)
