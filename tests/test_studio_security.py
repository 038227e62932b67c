"""The studio's security holes (issue 11, items 1 and 3) and its start-up faults, reproduced.

* Event handlers trusted what the browser sent back: the gallery grid handler read any image
  named by ``image_path`` (a thumbnail of any picture on the computer came back) and made a
  file name of ``image_hash`` (``../..`` wrote ``.jpg`` files, with their folders, anywhere).
  Reproduced as the raw HTTP request an attacker would send (``/gradio_api/queue/join`` with
  the handler's ``fn_index``), against a real studio process.
* DNS rebinding and cross-site requests: the studio answered any ``Host`` and stored uploads
  from any web site; uploads had no size limit that a user could set.
* ``captioner studio`` with a taken port, a gallery that is not a folder or is damaged, a
  read-only gallery, and ``/save`` with a photo index out of range.

The raw-HTTP helpers here (`StudioProcess`, `call`, `upload`) are also used by
``test_studio_memory.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from captioner.studio.guard import HostPolicy, StudioGuard, same_origin, split_host

FLICKR_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k" / "images"
STARTUP_TIMEOUT_S = 180


# ---------------------------------------------------------------------------- a studio process, raw HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StudioProcess:
    """``python -m captioner.studio.app`` with its own temp folders (TMPDIR, GRADIO_TEMP_DIR)."""

    def __init__(self, model_dir: Path, folder: Path, extra: list[str] = (), prefix: list[str] = (),
                 gallery: Path | None = None):
        self.folder = folder
        self.tmp = folder / "tmp"  # the studio's tempfile.gettempdir(): thumbnails, exports
        self.uploads = folder / "gradio"  # Gradio's upload cache
        self.gallery = gallery or folder / "gallery"
        self.log = folder / "studio.log"
        for d in (self.tmp, self.uploads):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                   TMPDIR=str(self.tmp), GRADIO_TEMP_DIR=str(self.uploads))
        self.cmd = [*prefix, sys.executable, "-m", "captioner.studio.app", "--model", str(model_dir),
                    "--gallery", str(self.gallery), "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, env=env)

    def wait(self) -> StudioProcess:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the studio exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the studio did not start in {STARTUP_TIMEOUT_S} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def config(self) -> dict:
        return httpx.get(self.url + "/config", timeout=10).json()

    def upload_files(self) -> set[Path]:
        return {p for p in self.uploads.rglob("*") if p.is_file()}


def dependencies(config: dict, *, output_elem: str | None = None, name: str | None = None) -> list[int]:
    """fn_index of the events named ``name`` or writing to the component with ``output_elem``."""
    elems = {c["id"]: (c.get("props") or {}).get("elem_id") for c in config["components"]}
    return [d["id"] for d in config["dependencies"]
            if (name is not None and d.get("api_name") == name)
            or (output_elem is not None and any(elems.get(o) == output_elem for o in d["outputs"]))]


def upload(client: httpx.Client, path: Path, headers: dict | None = None) -> httpx.Response:
    with open(path, "rb") as fh:
        return client.post("/gradio_api/upload", files={"files": (path.name, fh, "image/jpeg")}, headers=headers)


def file_data(server_path: str, name: str) -> dict:
    return {"path": server_path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def call(client: httpx.Client, fn_index: int, data: list, session: str | None = None,
         event_data=None) -> dict:
    """Run one event like the browser does (queue/join, then read the session's event stream)."""
    session = session or uuid.uuid4().hex[:11]
    r = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                     "event_data": event_data, "trigger_id": None})
    r.raise_for_status()
    event_id = r.json()["event_id"]
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    return msg
    raise AssertionError("the event stream ended without a result")


def make_photo(path: Path, color=(40, 120, 40)) -> Path:
    img = Image.new("RGB", (320, 240), color)
    for x in range(100, 220):
        for y in range(60, 180):
            img.putpixel((x, y), (200, 60 + (x - 100), 30))
    img.save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    if FLICKR_IMAGES.is_dir():
        for path in sorted(FLICKR_IMAGES.glob("*.jpg"))[:1]:
            return path
    return make_photo(tmp_path_factory.mktemp("photo") / "generated.jpg")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    studio = StudioProcess(tiny_model_dir, tmp_path_factory.mktemp("secure-studio")).wait()
    yield studio
    studio.stop()


# ---------------------------------------------------------------------------- 1. file read / write by fn_index
@pytest.mark.slow
def test_grid_handler_reads_and_writes_no_file_the_request_names(server, tmp_path):
    """The exact attack: the grid handler called by fn_index with a crafted search result."""
    foreign = make_photo(tmp_path / "private-photo.jpg", color=(200, 10, 10))  # not in the gallery
    outside = server.folder / "outside"
    # thumbnails go to $TMPDIR/captioner-studio/thumbs/<image_hash>.jpg: this climbs to <folder>/outside/x.jpg
    crafted = {"items": [{"id": 1, "caption": "pwned", "image_hash": "../../../outside/x",
                          "image_path": str(foreign)}],
               "total": 1, "page": 1, "pages": 1, "query": "", "match_all": True}
    config = server.config()
    targets = dependencies(config, output_elem="gallery-grid")
    assert targets, "no event draws the gallery grid"
    before = {p for p in server.folder.rglob("*") if p.is_file()}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for fn_index in targets:
            msg = call(client, fn_index, [crafted])
            data = (msg.get("output") or {}).get("data") or []
            shown = (data[0] or {}).get("value") if data and isinstance(data[0], dict) else None
            assert not shown, f"fn {fn_index} drew a thumbnail from the request: {shown}"
            assert "pwned" not in json.dumps(msg)
    assert not outside.exists(), "a file was created outside the thumbnail folder"
    created = {p for p in server.folder.rglob("*") if p.is_file()} - before
    assert not [p for p in created if p.suffix == ".jpg"], created


@pytest.mark.slow
def test_file_inputs_must_be_uploads(server, tmp_path):
    """/caption and the paste handler with a path the studio never received: Gradio refuses it."""
    foreign = make_photo(tmp_path / "private-photo.jpg", color=(10, 10, 200))
    config = server.config()
    (caption,) = dependencies(config, name="caption")
    (pasted,) = dependencies(config, name="add_pasted")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        # /caption's inputs: photos, beam, length, "Add to the list", the session's list (a State: null)
        msg = call(client, caption, [[file_data(str(foreign), "x.jpg")], 1, 5, False, None])
        assert msg["success"] is False
        msg = call(client, pasted, [file_data(str(foreign), "x.png"), [file_data(str(foreign), "y.jpg")]])
        assert msg["success"] is False
        sneaky = str(server.uploads / ".." / tmp_path.name / foreign.name)
        assert call(client, caption, [[file_data(sneaky, "x.jpg")], 1, 5, False, None])["success"] is False
        refused = call(client, caption, [[file_data(sneaky, "x.jpg")], 1, 5, True, None])
        assert refused["success"] is False and "enough input values" not in json.dumps(refused)  # refused for the path


@pytest.mark.slow
def test_export_format_cannot_name_a_path(server):
    (export,) = dependencies(server.config(), name="export")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        msg = call(client, export, ["../../../../export-outside/x"])
    assert msg["success"] is False
    assert not (server.folder / "export-outside").exists()


@pytest.mark.slow
def test_save_with_an_index_out_of_range_says_so(server, photo):
    from gradio_client import Client, handle_file

    c = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
    c.predict([handle_file(str(photo))], 2, 5, api_name="/caption")
    for photo_index, cand_index, words in [(99, 0, "no photo 99"), (-1, 0, "no photo -1"),
                                           (0, 57, "no candidate 57"), (0, -1, "no candidate -1")]:
        refused = c.predict(photo_index, cand_index, "", api_name="/save")
        assert refused["id"] is None and words in refused["error"], refused
    refused = c.predict(0, 0, "x" * 600, api_name="/save")
    assert refused["id"] is None and "too long" in refused["error"]


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
def test_cancelled_delete_keeps_the_item_in_the_browser(server, photo):
    """The delete button's confirmation box: "Cancel" must keep the item (it used to delete it anyway:
    the item id is server-side state, so the page's "null" answer never reached the handler)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    from captioner.storage import Gallery

    with Gallery(server.gallery) as g:
        item_id = g.save(str(photo), photo.name, "a photo to keep unless confirmed")
    sync_api.expect.set_options(timeout=90_000)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_default_timeout(90_000)
            page.goto(server.url)
            page.get_by_role("tab", name="Gallery").click()
            grid = page.locator("#gallery-grid")
            grid.locator(".caption-label", has_text="a photo to keep").first.click()
            sync_api.expect(page.locator("#item-details .chosen")).to_contain_text("a photo to keep")
            page.once("dialog", lambda dialog: dialog.dismiss())
            page.click("#delete-button")
            page.wait_for_timeout(3000)
            with Gallery(server.gallery) as g:
                assert g.get(item_id) is not None, "the item was deleted although the user said Cancel"
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#delete-button")
            sync_api.expect(page.locator("#gallery-message")).to_contain_text(f"Deleted item #{item_id}")
        finally:
            browser.close()
    with Gallery(server.gallery) as g:
        assert g.get(item_id) is None


# ---------------------------------------------------------------------------- 1. the same, in-process
@pytest.fixture(scope="module")
def local_studio(tiny_model_dir, tmp_path_factory):
    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio
    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path_factory.mktemp("sec-gallery")))
    studio.thumbs = tmp_path_factory.mktemp("sec-tmp") / "captioner-studio" / "thumbs"
    studio.upload_dir = None  # test photos are not uploads (checked in test_photos_must_be_uploads)
    return studio


def test_photos_must_be_uploads(local_studio, photo, tmp_path, monkeypatch):
    import gradio as gr

    uploads = tmp_path / "gradio"
    (uploads / "abc").mkdir(parents=True)
    inside = uploads / "abc" / photo.name
    inside.write_bytes(photo.read_bytes())
    monkeypatch.setattr(local_studio, "upload_dir", uploads.resolve())
    result, _ = local_studio.photos.caption([str(inside)], 1, 4)
    assert result["captioned"] == 1
    for files in [[str(photo)], [str(inside), str(photo)], [str(uploads / "abc" / ".." / ".." / photo.name)],
                  [str(uploads)]]:
        with pytest.raises(gr.Error, match="uploaded"):
            local_studio.photos.caption(files, 1, 4)


def test_thumbnails_only_of_gallery_files_with_hex_names(local_studio, photo, tmp_path):
    studio = local_studio
    item_id = studio.gallery.save(str(photo), photo.name, "a test photo")
    item = studio.gallery.get(item_id)
    good = {"id": item_id, "caption": "ok", "image_hash": item["image_hash"], "image_path": item["image_path"]}
    thumb = studio.library._thumb(good)
    assert thumb and Path(thumb).parent == studio.thumbs and Path(thumb).name == item["image_hash"] + ".jpg"

    foreign = make_photo(tmp_path / "foreign.jpg")
    for bad in [dict(good, image_hash="../../../x"), dict(good, image_hash="ab" * 31),
                dict(good, image_hash=item["image_hash"].upper()), dict(good, image_hash=None),
                dict(good, image_hash="0" * 64, image_path=str(foreign)),
                dict(good, image_hash="1" * 64, image_path=str(Path(item["image_path"]).parent / ".." / ".." /
                                                               ".." / foreign.name)),
                dict(good, image_hash="2" * 64, image_path=str(studio.gallery.images_dir))]:
        assert studio.library._thumb(bad) is None, bad
    assert sorted(p.name for p in studio.thumbs.parent.rglob("*") if p.is_file()) == [item["image_hash"] + ".jpg"]
    studio.gallery.delete(item_id)


def test_grid_is_drawn_from_the_sessions_page_only(local_studio, photo):
    import gradio as gr

    studio = local_studio
    item_id = studio.gallery.save(str(photo), photo.name, "a zebra on a test photo")
    found, page = studio.library.search("zebra", 1)
    assert [it["id"] for it in found["items"]] == [item_id]
    # no candidates kept: the grid's fields and the search's highlight and where it matched
    assert set(page["items"][0]) == {"id", "caption", "image_hash", "image_path", "highlight", "matched_in"}
    grid, line, page_no, ids, *_ = studio.library.show_grid(page)
    assert ids == [item_id] and len(grid.value) == 1
    # a garbage page (there is no way for a client to send one, but it must not break anything)
    for junk in [None, "x", {"items": "x"}, {"items": [{"id": 1}]}]:
        try:
            studio.library.show_grid(junk)
        except (KeyError, TypeError, AttributeError):
            pass
    # show_item: only indexes into the session's ids
    for index in [-1, 5, "1", None, [0], 0.5]:
        details, selected, _ = studio.library.show_item(ids, gr.SelectData(None, {"index": index, "value": None}))
        assert selected is None, index
    details, selected, _ = studio.library.show_item(ids, gr.SelectData(None, {"index": 0, "value": None}))
    assert selected == item_id and "zebra" in details
    studio.gallery.delete(item_id)


def test_delete_needs_the_confirmation(local_studio, photo):
    studio = local_studio
    item_id = studio.gallery.save(str(photo), photo.name, "to be kept")
    for answer in (False, None, "true", 1):
        studio.library.delete(item_id, answer)
        assert studio.gallery.get(item_id) is not None, answer
    message, *_ = studio.library.delete(item_id, True)
    assert "Deleted" in message and studio.gallery.get(item_id) is None


def test_indexes_from_the_browser_are_checked(local_studio, photo):
    import gradio as gr

    studio = local_studio
    before = studio.gallery.count()
    result, state = studio.photos.caption([str(photo)], 2, 5)
    # the player's Save / Save all send {photo, candidate, text}: indexes into the session's list only
    choices = [{"photo": p, "candidate": c, "text": "x"} for p, c in
               [(-1, 0), (0, -1), (0, 99), (3, 0), ("x", 0), (None, None), (0.5, 0), ("../../etc/passwd", 0)]]
    with pytest.warns(UserWarning):
        saved, _ = studio.photos.save_all(state, SimpleNamespace(_data={"choices": choices}))
    assert saved["saved"] == 0 and studio.gallery.count() == before
    for bad in [(-1, 0), (1, 0), (0, 99), (0, -1), ("1e9", 0), (0.5, 0)]:
        with pytest.warns(UserWarning):
            assert studio.photos.save(*bad, "", state)["id"] is None, bad
    with pytest.raises(gr.Error):
        studio.library.export("../../x")


def test_sessions_keep_no_pictures_and_few_photos(local_studio, photo, monkeypatch):
    from captioner.studio import photos_tab

    studio = local_studio
    monkeypatch.setattr(photos_tab, "MAX_PHOTOS", 2)
    with pytest.warns(UserWarning, match="At most 2 photos"):
        result, state = studio.photos.caption([str(photo)] * 3, 1, 4)
    assert len(state["photos"]) == 2 and "1 more photo was left out" in result["message"]
    studio.photos.show_results(state)
    for entry in state["photos"]:  # no pictures: they are drawn when shown
        assert set(entry) == {"key", "name", "path", "width", "height", "error", "candidates", "beam_size",
                              "tags", "confidence", "warnings", "saved"}
        for cand in entry["candidates"]:
            assert cand.attention.untyped_storage().nbytes() == cand.attention.numel() * cand.attention.element_size()


def test_a_read_only_gallery_is_browsed_but_not_changed(tiny_model_dir, photo, tmp_path):
    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio

    gallery = Gallery(tmp_path / "g")
    item_id = gallery.save(str(photo), photo.name, "a saved photo")
    studio = Studio(Captioner.load(tiny_model_dir), gallery, read_only=True)
    studio.thumbs, studio.upload_dir = tmp_path / "thumbs", None
    studio.build()
    found, page = studio.library.search("", 1)
    assert [it["id"] for it in found["items"]] == [item_id]
    assert studio.library.show_grid(page)[3] == [item_id]
    result, state = studio.photos.caption([str(photo)], 1, 4)
    status, view, _ = studio.photos.show_results(state)
    assert view["read_only"] is True and "read-only" in status  # the player shows no Save buttons
    with pytest.warns(UserWarning, match="read-only"):
        refused = studio.photos.save(0, 0, "", state)
    assert refused["id"] is None and "read-only" in refused["error"]
    message, *_ = studio.library.delete(item_id, True)
    assert "read-only" in message and gallery.count() == 1


# ---------------------------------------------------------------------------- 3. the guard (no browser, no server)
class Recorder:
    """A bare ASGI app that reads the whole body and answers 200."""

    def __init__(self):
        self.calls = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            self.calls.append(("WS", scope["path"], 0))
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope["method"], scope["path"], len(body)))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def guarded(**kwargs):
    from starlette.testclient import TestClient

    app = Recorder()
    return app, TestClient(StudioGuard(app, **kwargs), base_url="http://127.0.0.1:7860")


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "127.0.0.1.evil.example", "localhost.evil",
                                  "0.0.0.0:7860", "10.0.0.5", "[fe80::1]:7860", "", "local host", "a@127.0.0.1"])
def test_guard_refuses_other_hosts(host):
    app, client = guarded()
    r = client.get("/config", headers={"Host": host, "Origin": f"http://{host}"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = client.options("/gradio_api/upload", headers={"Host": host, "Origin": "http://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    assert app.calls == []


@pytest.mark.parametrize("host", ["localhost", "localhost:7860", "LOCALHOST:7860", "localhost.", "127.0.0.1",
                                  "127.0.0.1:7860", "127.1.2.3:80", "[::1]", "[::1]:7860"])
def test_guard_answers_loopback_hosts(host):
    app, client = guarded()
    assert client.get("/", headers={"Host": host}).status_code == 200
    assert client.post("/gradio_api/queue/join", headers={"Host": host}, json={}).status_code == 200
    assert len(app.calls) == 2


def test_guard_allowed_hosts_and_addresses_with_listen():
    from captioner.studio.app import host_policy

    app, client = guarded(hosts=host_policy("127.0.0.1", True, ["studio.lan", "Photo-Box.local:7860"]))
    for host in ["studio.lan:7860", "photo-box.local", "192.168.1.20:7860", "[fd00::2]:7860", "localhost"]:
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ["evil.example", "studio.lan.evil.example", "lan"]:
        assert client.get("/", headers={"Host": host}).status_code == 403, host
    # without --listen, addresses are not enough, but names given by the user are
    app, client = guarded(hosts=host_policy("127.0.0.1", False, ["studio.lan"]))
    assert client.get("/", headers={"Host": "192.168.1.20:7860"}).status_code == 403
    assert client.get("/", headers={"Host": "studio.lan"}).status_code == 200
    # --host with a name of this computer is answered to
    app, client = guarded(hosts=host_policy("myhost.example", False))
    assert client.get("/", headers={"Host": "myhost.example:7860"}).status_code == 200
    with pytest.raises(Exception, match="allowed-host"):
        host_policy("127.0.0.1", False, ["bad/name"])


def test_guard_refuses_cross_site_changes_only():
    app, client = guarded()
    local = {"Host": "127.0.0.1:7860"}
    for origin in ["http://evil.example", "null", "http://127.0.0.1:7861", "http://localhost:7860",
                   "http://127.0.0.1", "http://127.0.0.1:7860/x", "garbage", "file://"]:
        r = client.post("/gradio_api/upload", headers={**local, "Origin": origin}, files={"files": ("a.jpg", b"x")})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, origin
        assert client.put("/x", headers={**local, "Origin": origin}).status_code == 403
    assert app.calls == []
    # same origin, or no Origin (scripts), is fine; reads from anywhere are CORS's business
    assert client.post("/gradio_api/upload", headers={**local, "Origin": "http://127.0.0.1:7860"},
                       files={"files": ("a.jpg", b"x")}).status_code == 200
    assert client.post("/gradio_api/upload", headers={"Host": "localhost", "Origin": "http://LOCALHOST:80"},
                       files={"files": ("a.jpg", b"x")}).status_code == 200
    assert client.post("/gradio_api/queue/join", headers=local, json={}).status_code == 200
    assert client.get("/config", headers={**local, "Origin": "http://evil.example"}).status_code == 200
    assert len(app.calls) == 4


def test_guard_refuses_cross_site_websockets():
    from starlette.websockets import WebSocketDisconnect

    app, client = guarded()
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"Host": "127.0.0.1:7860", "Origin": "http://evil.example"}):
            pass
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"Host": "evil.example"}):
            pass
    assert app.calls == []
    with client.websocket_connect("/ws", headers={"Host": "127.0.0.1:7860", "Origin": "http://127.0.0.1:7860"}):
        pass
    assert app.calls == [("WS", "/ws", 0)]


def test_guard_caps_request_sizes():
    app, client = guarded(max_body_bytes=1000, max_upload_bytes=5000)
    local = {"Host": "127.0.0.1:7860"}
    assert client.post("/gradio_api/queue/join", headers=local, content=b"x" * 1000).status_code == 200
    assert client.post("/gradio_api/queue/join", headers=local, content=b"x" * 1001).status_code == 413
    assert client.post("/gradio_api/upload", headers=local, content=b"x" * 5000).status_code == 200
    assert client.post("/gradio_api/upload", headers=local, content=b"x" * 5001).status_code == 413
    assert client.post("/x", headers={**local, "Content-Length": "12x"}, content=b"x").status_code == 400

    def chunks(n):  # no Content-Length: the body is counted as it arrives
        for _ in range(n):
            yield b"y" * 500

    r = client.post("/gradio_api/queue/join", headers=local, content=chunks(3))
    assert r.status_code == 413 and "too large" in r.text
    assert client.post("/gradio_api/queue/join", headers=local, content=chunks(2)).status_code == 200
    assert [c[2] for c in app.calls] == [1000, 5000, 1000]
    assert client.get("/", headers=local).status_code == 200  # GETs have no body to limit


def test_split_host_and_same_origin():
    assert split_host("LocalHost:80") == ("localhost", 80)
    assert split_host("[::1]:7860") == ("::1", 7860)
    assert split_host("[::1]") == ("::1", None)
    assert split_host("example.com.") == ("example.com", None)
    for bad in [None, "", ":80", "a:b", "a:99999", "[::1", "[::1]x", "a b", "a/b", "a:0"]:
        assert split_host(bad) is None, bad
    assert same_origin("http://127.0.0.1:7860", "127.0.0.1:7860", "http")
    assert same_origin("http://localhost", "localhost:80", "http")
    assert same_origin("https://studio.lan", "studio.lan", "http")  # behind a TLS proxy
    assert not same_origin("http://localhost:3000", "localhost", "http")  # another local site
    assert not same_origin("http://127.0.0.1:7861", "127.0.0.1:7860", "http")
    assert not same_origin("null", "localhost", "http")
    assert not same_origin("http://[::1", "localhost", "http")
    policy = HostPolicy(["Studio.LAN"])
    assert policy.allows("studio.lan:1") and not policy.allows("studio.lan.evil")


# ---------------------------------------------------------------------------- the Caption tab's own route
ORIGIN = "http://127.0.0.1:7860"


@pytest.fixture(scope="module")
def direct(tiny_model_dir, tmp_path_factory):
    """The studio's ASGI app as `launch` makes it (the guard, the direct route, Gradio), driven in-process;
    its uploads folder is a temporary one (photos must be copied in to be staged)."""
    from starlette.testclient import TestClient

    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio, host_policy, make_app

    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path_factory.mktemp("direct-gallery")))
    studio.upload_dir = tmp_path_factory.mktemp("direct-uploads").resolve()
    demo = studio.build()
    app = make_app(demo, host_policy("127.0.0.1", False), studio=studio)
    assert studio.photos.direct
    return SimpleNamespace(studio=studio, demo=demo, http=TestClient(app, base_url=ORIGIN))


def _upload(direct, photo: Path) -> str:
    folder = direct.studio.upload_dir / uuid.uuid4().hex[:8]
    folder.mkdir()
    shutil.copy(photo, folder / photo.name)
    return str(folder / photo.name)


def _stage(direct, session: str, paths) -> str:
    """What the page's file box change does: `stage` in that session; returns the token it was given."""
    direct.demo.state_holder[session]  # noqa: B018 - the session exists once the page has sent an event
    answer = json.loads(direct.studio.photos.stage(paths, SimpleNamespace(session_hash=session)))
    assert answer["paths"] == (paths if answer["token"] else [])
    return answer["token"]


def _list(direct, session: str) -> list:
    state = direct.demo.state_holder[session][direct.studio.photos._session._id]
    return [p["path"] for p in (state or {}).get("photos", [])]


def _post(direct, body, headers=None):
    return direct.http.post("/studio/caption", content=json.dumps(body),
                            headers={"Content-Type": "application/json", "Origin": ORIGIN, **(headers or {})})


def test_direct_caption_takes_only_a_token_the_server_gave_this_page(direct, photo):
    upload_path = _upload(direct, photo)
    token = _stage(direct, "page-a", [upload_path])
    assert token and photo.name not in token
    body = {"token": token, "beam_size": 2, "max_length": 5, "add": False}
    # not the studio's own page: another site, no Origin (a script, a form), another Host, not JSON, not POST
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Host": "evil.example"},
                    {"Origin": "http://127.0.0.1:7861"}):
        assert _post(direct, body, headers).status_code == 403, headers
    bare = direct.http.post("/studio/caption", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert bare.status_code == 403
    assert direct.http.post("/studio/caption", content=json.dumps(body),
                            headers={"Content-Type": "text/plain", "Origin": ORIGIN}).status_code == 415
    assert direct.http.get("/studio/caption", headers={"Origin": ORIGIN}).status_code in (404, 405)
    # a path or anything else in the body; tokens the server did not give; nothing was captioned
    for bad in [dict(body, path="/etc/passwd"), dict(body, files=[upload_path]), {**body, "token": upload_path},
                {**body, "token": "../" * 11}, {**body, "token": None}, {**body, "token": token[:-1] + ("A" if token[-1] != "A" else "B")},
                {**body, "token": "A" * 32}, [token], "x"]:
        assert _post(direct, bad).status_code in (400, 403), bad
    assert _list(direct, "page-a") == []
    # the right one: the photo is captioned into the page's own list; the token is used up
    answer = _post(direct, body)
    assert answer.status_code == 200, answer.text
    view = answer.json()["view"]
    assert [p["name"] for p in view["photos"]] == [photo.name] and view["photos"][0]["candidates"]
    assert _list(direct, "page-a") == [upload_path]
    assert _post(direct, body).status_code == 403  # no replay


def test_only_one_upload_is_staged_and_a_new_drop_voids_the_old_token(direct, photo, tmp_path, monkeypatch):
    from captioner.studio import photos_tab

    outside = tmp_path / photo.name
    shutil.copy(photo, outside)
    assert _stage(direct, "page-b", [str(outside)]) == ""  # not an upload
    assert _stage(direct, "page-b", [str(direct.studio.upload_dir / ".." / outside.name)]) == ""
    assert _stage(direct, "page-b", [_upload(direct, photo), _upload(direct, photo)]) == ""  # several: the queue
    assert _stage(direct, "page-b", None) == ""
    first = _stage(direct, "page-b", [_upload(direct, photo)])
    second = _stage(direct, "page-b", [_upload(direct, photo)])
    assert first and second and first != second
    body = {"beam_size": 1, "max_length": 4}
    assert _post(direct, {**body, "token": first}).status_code == 403  # the file box changed since
    # a token is its own session's only: another page's session is not touched
    other = _stage(direct, "page-c", [_upload(direct, photo)])
    assert _post(direct, {**body, "token": other}).status_code == 200
    assert _list(direct, "page-b") == [] and len(_list(direct, "page-c")) == 1
    # a session that is gone, and a token kept too long
    direct.demo.state_holder.session_data.pop("page-b")
    assert _post(direct, {**body, "token": second}).status_code == 403
    late = _stage(direct, "page-d", [_upload(direct, photo)])
    monkeypatch.setattr(photos_tab, "STAGE_TTL_S", -1)
    assert _post(direct, {**body, "token": late}).status_code == 403
    assert _list(direct, "page-d") == []


def test_no_direct_route_without_the_studio(tiny_model_dir, tmp_path, photo):
    """An app made without its Studio (`make_app(demo, hosts)`) has no direct route; the page gets no token."""
    from starlette.testclient import TestClient

    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio, host_policy, make_app

    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path / "g"))
    studio.upload_dir = None
    app = make_app(studio.build(), host_policy("127.0.0.1", False))
    assert not studio.photos.direct
    assert json.loads(studio.photos.stage([str(photo)], SimpleNamespace(session_hash="s")))["token"] == ""
    http = TestClient(app, base_url=ORIGIN)
    r = http.post("/studio/caption", json={"token": "A" * 32}, headers={"Origin": ORIGIN})
    assert r.status_code in (404, 405)


# ---------------------------------------------------------------------------- 3. against a real studio
@pytest.mark.slow
def test_studio_refuses_other_hosts(server):
    (caption,) = dependencies(server.config(), name="caption")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ["/", "/config", "/gradio_api/info", "/gradio_api/queue/status"]:
            r = client.get(path, headers={"Host": "evil.example"})
            assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, path
            assert client.get(path, headers={"Host": f"localhost:{server.port}"}).status_code == 200, path
        r = client.post("/gradio_api/queue/join", headers={"Host": f"evil.example:{server.port}"},
                        json={"data": [None, 1, 5], "fn_index": caption, "session_hash": "abcdefgh"})
        assert r.status_code == 403
        r = client.options("/gradio_api/upload", headers={"Host": "evil.example", "Origin": "http://evil.example",
                                                          "Access-Control-Request-Method": "POST"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


@pytest.mark.slow
def test_studio_refuses_cross_site_uploads_and_stores_nothing(server, photo):
    before = server.upload_files()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for origin in ["http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}"]:
            r = upload(client, photo, {"Origin": origin})
            assert r.status_code == 403, (origin, r.text)
        time.sleep(0.5)
        assert server.upload_files() == before
        # the studio's own page (and scripts, which send no Origin) can upload
        r = upload(client, photo, {"Origin": server.url})
        assert r.status_code == 200 and Path(r.json()[0]).is_file()
        assert upload(client, photo).status_code == 200


@pytest.mark.slow
def test_studio_refuses_a_60_mb_upload(server, tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(60 * 2**20)
    before = server.upload_files()
    with httpx.Client(base_url=server.url, timeout=120) as client:
        try:
            r = upload(client, big)
            assert r.status_code == 413, r.text
        except httpx.HTTPError:
            pass  # the server may also close the connection while the body is still being sent
    time.sleep(1)
    after = server.upload_files()
    assert not [p for p in after - before if p.stat().st_size > 2**20], after - before
    assert httpx.get(server.url + "/config", timeout=10).status_code == 200  # still serving


# ---------------------------------------------------------------------------- start-up faults
def run_cli(args: list[str], timeout: float = 120, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    return subprocess.run([*prefix, sys.executable, "-m", "captioner", "studio", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def assert_one_error_line(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], p.stderr
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.slow
def test_port_in_use(tiny_model_dir, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = run_cli(["--model", str(tiny_model_dir), "--gallery", str(tmp_path / "g"), "--port", str(port)])
    assert_one_error_line(p, str(port), "already in use")
    assert not (tmp_path / "g").exists()  # said at once, before anything else


@pytest.mark.slow
def test_gallery_that_is_not_a_folder_or_is_damaged(tiny_model_dir, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a gallery")
    p = run_cli(["--model", str(tiny_model_dir), "--gallery", str(a_file), "--port", str(free_port())])
    assert_one_error_line(p, "not a folder")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "gallery.db").write_bytes(b"this is not SQLite" * 100)
    p = run_cli(["--model", str(tiny_model_dir), "--gallery", str(damaged), "--port", str(free_port())])
    assert_one_error_line(p, str(damaged))


def test_bad_options_are_refused(tmp_path):
    p = run_cli(["--max-upload-mb", "0"])
    assert p.returncode == 2 and "max-upload-mb" in p.stderr and "Traceback" not in p.stderr
    p = run_cli(["--allowed-host", "bad/name", "--gallery", str(tmp_path / "g"), "--port", str(free_port())])
    assert_one_error_line(p, "allowed-host")


def _read_only_mount_prefix(folder: Path) -> list[str] | None:
    """A command prefix running the rest with ``folder`` mounted read-only (Linux, as root), or None."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind '{folder}' '{folder}' && "
                            f"mount -o remount,ro,bind '{folder}' && ! touch '{folder}/probe' 2>/dev/null"],
                           capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", f"mount --bind '{folder}' '{folder}' && "
            f"mount -o remount,ro,bind '{folder}' && exec \"$@\"", "sh"]


@pytest.mark.slow
def test_read_only_gallery_folder(tiny_model_dir, photo, tmp_path):
    """A gallery on a read-only file system: browse it and refuse saves, or say clearly that it cannot open."""
    from captioner.storage import Gallery

    folder = tmp_path / "ro-gallery"
    with Gallery(folder) as g:
        item_id = g.save(str(photo), photo.name, "a read only photo")
    prefix = _read_only_mount_prefix(folder)
    if prefix is None:
        pytest.skip("mounting a folder read-only needs Linux, root and unshare")
    studio = StudioProcess(tiny_model_dir, tmp_path / "ro-run", prefix=prefix, gallery=folder)
    try:
        studio.wait()  # a read-only gallery opens for browsing
        from gradio_client import Client, handle_file
        c = Client(studio.url, verbose=False, analytics_enabled=False, download_files=False)
        assert [it["id"] for it in c.predict("", 1, api_name="/search")["items"]] == [item_id]
        c.predict([handle_file(str(photo))], 1, 4, api_name="/caption")
        refused = c.predict(0, 0, "", api_name="/save")
        assert refused["id"] is None and "read-only" in refused["error"]
    finally:
        studio.stop()
