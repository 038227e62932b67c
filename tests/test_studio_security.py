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
from oracles.photos import FLICKR

FLICKR_IMAGES = FLICKR / "images"
STARTUP_TIMEOUT_S = 180


# ---------------------------------------------------------------------------- a studio process, raw HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StudioProcess:
    """``python -m captioner.studio`` with its own temp folders (TMPDIR, GRADIO_TEMP_DIR)."""

    def __init__(self, model_dir: Path, folder: Path, extra: list[str] = (), prefix: list[str] = (),
                 gallery: Path | None = None, env: dict | None = None):
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
                   TMPDIR=str(self.tmp), GRADIO_TEMP_DIR=str(self.uploads), **(env or {}))
        self.cmd = [*prefix, sys.executable, "-m", "captioner.studio", "--model", str(model_dir),
                    "--gallery", str(self.gallery), "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, env=env)

    def wait(self, ready=(200,)) -> StudioProcess:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the studio exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/", timeout=2).status_code in ready:
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


#: The cookie the studio's page gets when it is served (`captioner.studio.guard.PageTokens`).
PAGE_COOKIE = "captioner_page_"


def as_page(client: httpx.Client) -> httpx.Client:
    """Load the studio's page in this client, as a browser tab does before any event (it gets the page's cookie)."""
    if not any(name.startswith(PAGE_COOKIE) for name in client.cookies.keys()):
        client.get("/").raise_for_status()
    return client


def call(client: httpx.Client, fn_index: int, data: list, session: str | None = None,
         event_data=None, page: bool = True) -> dict:
    """Run one event like the browser does (queue/join, then read the session's event stream); ``page``:
    as the studio's own page (with its cookie), else as a bare script."""
    session = session or uuid.uuid4().hex[:11]
    if page:
        as_page(client)
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
    from playwright import sync_api

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
    saved = studio.photos.save_all(state, SimpleNamespace(_data={"choices": choices}))  # (said in the player)
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
                              "tags", "confidence", "warnings", "saved", "result"}
        assert entry["result"].candidates is entry["candidates"] and entry["result"].features is None
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
    body = {"token": token, "beam_size": 2, "max_len": 5, "add": False}
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
    body = {"beam_size": 1, "max_len": 4}
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


# ---------------------------------------------------------------------------- only the studio's page drives it
def triggered_by(config: dict, elem_id: str) -> list[int]:
    """fn_index of the server events started by the component with ``elem_id`` (not the chained ones)."""
    ids = {c["id"] for c in config["components"] if (c.get("props") or {}).get("elem_id") == elem_id}
    return [d["id"] for d in config["dependencies"]
            if d.get("backend_fn") and any(t[0] in ids for t in d.get("targets") or [])]


def _trashed_item(gallery_dir: Path, photo: Path, caption: str) -> int:
    from captioner.storage import Gallery

    with Gallery(gallery_dir) as g:
        item_id = g.save(str(photo), photo.name, caption)
        g.delete(item_id)
    return item_id


def _in_trash(gallery_dir: Path, item_id: int) -> bool:
    from captioner.storage import Gallery

    with Gallery(gallery_dir) as g:
        return g.get(item_id, include_trash=True) is not None


@pytest.mark.slow
def test_a_script_cannot_call_events_that_are_not_the_api(server, photo):
    """The fault run's exploit: `empty_trash` by its fn_index with [True], no Origin, no page: refused (403),
    by every route that runs an event; `export` too.  The three API events still answer scripts."""
    from gradio_client import Client

    item_id = _trashed_item(server.gallery, photo, "kept in the trash unless the page confirms")
    config = server.config()
    (empty,) = triggered_by(config, "empty-trash")
    (export,) = dependencies(config, name="export")
    with httpx.Client(base_url=server.url, timeout=60) as script:
        for path, body in [("/gradio_api/queue/join", {"fn_index": empty, "session_hash": "s1"}),
                           ("/gradio_api/run/predict", {"fn_index": empty, "session_hash": "s1"}),
                           ("/gradio_api/run/search", {"fn_index": empty, "session_hash": "s1"}),  # a public name
                           ("/gradio_api/call/search", {"fn_index": empty}),
                           ("/gradio_api/queue/join", {"fn_index": export, "session_hash": "s1"}),
                           ("/gradio_api/queue/join", {"session_hash": "s1"})]:
            r = script.post(path, json={"data": [True], "event_data": None, "trigger_id": None, **body})
            assert r.status_code == 403, (path, body, r.status_code, r.text[:300])
        for path in ["/gradio_api/component_server", "/gradio_api/cancel", "/gradio_api/stream/x"]:
            assert script.post(path, json={}).status_code == 403, path
        time.sleep(2)
        assert _in_trash(server.gallery, item_id), "a script emptied the trash"
        assert script.post("/gradio_api/queue/join", content=b"{not json",
                           headers={"Content-Type": "application/json"}).status_code in (400, 403)
    c = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own or httpx's error
        c.predict(True, fn_index=empty)
    assert _in_trash(server.gallery, item_id)
    assert "items" in c.predict("", 1, api_name="/search")  # the API is still the API


@pytest.mark.slow
def test_the_page_must_confirm_destructive_events_on_the_server(server, photo):
    """With the page's cookie, `empty_trash` by fn_index with [True] or a made-up confirmation still removes
    nothing: only the code the server gave this session for this action, just before, is honoured."""
    item_id = _trashed_item(server.gallery, photo, "kept unless the server's confirmation comes back")
    config = server.config()
    (empty,) = triggered_by(config, "empty-trash")
    with httpx.Client(base_url=server.url, timeout=60) as page:
        for forged in (True, "true", "A" * 32, None):
            msg = call(page, empty, [forged])
            assert "removed for good" not in json.dumps(msg), (forged, msg)
    assert _in_trash(server.gallery, item_id), "the trash was emptied without the page's confirmation"


def test_confirmations_are_one_time_per_session_and_action(monkeypatch):
    from captioner.studio import sessions

    c = sessions.Confirmations()
    code = c.ask("page-1", "empty_trash")
    assert code and c.ask("page-1", "empty_trash") != code  # a new question voids the old code
    code = c.ask("page-1", "empty_trash")
    assert not c.take("page-2", "empty_trash", code)  # another session
    assert not c.take("page-1", "delete", code)  # another action
    for bad in (True, None, "", code[:-1], 1):
        assert not c.take("page-1", "empty_trash", bad)
    assert c.take("page-1", "empty_trash", code)
    assert not c.take("page-1", "empty_trash", code)  # used up
    late = c.ask("page-1", "delete")
    monkeypatch.setattr(sessions, "CONFIRM_TTL_S", -1)
    assert not c.take("page-1", "delete", late)
    assert not c.take(None, "delete", c.ask(None, "delete"))  # no session: nothing to confirm


@pytest.fixture(scope="module")
def app_parts(tiny_model_dir, tmp_path_factory):
    """A studio built as `launch` builds it (not served): its Studio and Blocks."""
    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio

    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path_factory.mktemp("guard-gallery")))
    studio.upload_dir = None
    return studio, studio.build()


def test_events_other_than_the_api_need_the_page_in_process(app_parts):
    """The same checks on the app `make_app` makes (no server): a bare request is refused before Gradio."""
    from starlette.testclient import TestClient

    from captioner.studio.app import host_policy, make_app

    studio, demo = app_parts
    app = make_app(demo, host_policy("127.0.0.1", False), studio=studio)
    fns = {fn.api_name: i for i, fn in demo.fns.items() if fn.api_name}
    (empty,) = [i for i, fn in demo.fns.items() if getattr(fn.fn, "__name__", "") == "empty_trash_confirmed"]
    http = TestClient(app, base_url=ORIGIN)
    for path, body in [("/gradio_api/queue/join", {"fn_index": empty}), ("/gradio_api/run/predict", {"fn_index": empty}),
                       ("/gradio_api/run/search", {"fn_index": empty}), ("/gradio_api/call/v2/save", {"fn_index": empty}),
                       ("/gradio_api/run/save_all", {}), ("/gradio_api/queue/join", {"fn_index": "0"}),
                       ("/gradio_api/queue/join", {"fn_index": True}),
                       # a public fn_index in the body of a route that runs the event named in its path
                       ("/gradio_api/call/empty_trash_confirmed", {"fn_index": fns["search"]}),
                       ("/gradio_api/call/v2/empty_trash_confirmed", {"fn_index": fns["search"]}),
                       ("/gradio_api/run/empty_trash_confirmed", {}),
                       ("/gradio_api/run/upload", {"fn_index": empty}), ("/gradio_api/call/upload", {})]:
        r = http.post(path, json={"data": [True], "session_hash": "abc", **body})
        assert r.status_code == 403 and "/caption" in r.text, (path, body)
    assert http.post("/gradio_api/queue/join", content=b"[1,", headers={"Content-Type": "application/json"}
                     ).status_code in (400, 403)
    page = TestClient(app, base_url=ORIGIN)
    r = page.get("/")
    assert r.status_code == 200 and any(name.startswith(PAGE_COOKIE) for name in page.cookies.keys())
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    # the page's cookie lets its events through (Gradio answers: not 403); a forged one does not
    assert page.post("/gradio_api/run/predict", json={"data": [None], "fn_index": empty,
                                                      "session_hash": "abc"}).status_code != 403
    (name,) = [n for n in page.cookies.keys() if n.startswith(PAGE_COOKIE)]
    forged = TestClient(app, base_url=ORIGIN, cookies={name: "x" * 24 + "." + "0" * 32})
    assert forged.post("/gradio_api/run/predict", json={"data": [None], "fn_index": empty,
                                                        "session_hash": "abc"}).status_code == 403
    # the three API events by name or by their own fn_index need no page
    assert http.post("/gradio_api/run/search", json={"data": ["", 1, None], "session_hash": "abc"}).status_code == 200
    assert http.post("/gradio_api/run/predict", json={"data": ["", 1, None], "fn_index": fns["search"],
                                                      "session_hash": "abc"}).status_code == 200


# ---------------------------------------------------------------------------- CORS: the studio's own origin only
def test_no_cors_for_other_local_origins(app_parts):
    from starlette.testclient import TestClient

    from captioner.studio.app import host_policy, make_app

    studio, demo = app_parts
    http = TestClient(make_app(demo, host_policy("127.0.0.1", False), studio=studio), base_url=ORIGIN)
    for origin in ["http://127.0.0.1:7861", "http://localhost:3000", "http://localhost:7860", "null",
                   "http://evil.example"]:
        for path in ["/config", "/", "/gradio_api/info"]:
            r = http.get(path, headers={"Origin": origin})
            assert not [h for h in r.headers if h.lower().startswith("access-control-")], (origin, path, r.headers)
        r = http.options("/gradio_api/upload", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers, origin
    assert http.get("/config", headers={"Origin": ORIGIN}).status_code == 200  # its own page


def test_guard_strips_cors_headers_for_other_origins():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"access-control-allow-origin", b"*"), (b"access-control-allow-credentials", b"true"),
                                (b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    from starlette.testclient import TestClient

    client = TestClient(StudioGuard(app), base_url="http://127.0.0.1:7860")
    r = client.get("/config", headers={"Origin": "http://127.0.0.1:7861"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "access-control-allow-credentials" not in r.headers
    r = client.options("/x", headers={"Origin": "http://localhost:9", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


# ---------------------------------------------------------------------------- --listen needs a login
def test_access_token_and_password(app_parts):
    from starlette.testclient import TestClient

    from captioner.studio.app import host_policy, make_app
    from captioner.studio.guard import Access

    studio, demo = app_parts
    token = "s3cret-token-for-the-test"
    app = make_app(demo, host_policy("127.0.0.1", True), studio=studio, access=Access(token=token))
    anon = TestClient(app, base_url=ORIGIN, follow_redirects=False)
    for path in ["/", "/config", "/gradio_api/info", "/?token=wrong", "/?token="]:
        assert anon.get(path).status_code in (401, 403), path
    assert anon.post("/gradio_api/upload", files={"files": ("a.jpg", b"x")}).status_code in (401, 403)
    assert anon.get("/config", headers={"Authorization": "Bearer wrong"}).status_code in (401, 403)
    r = anon.get("/?token=" + token)
    assert r.status_code in (302, 303, 307) and "token" not in r.headers["location"]
    assert "httponly" in r.headers["set-cookie"].lower()
    assert anon.get("/").status_code == 200  # the cookie the link set
    assert TestClient(app, base_url=ORIGIN).get("/config", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    app = make_app(demo, host_policy("127.0.0.1", True), studio=studio, access=Access(users={"ann": "pw:1"}))
    anon = TestClient(app, base_url=ORIGIN)
    r = anon.get("/config")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert anon.get("/config", auth=("ann", "wrong")).status_code == 401
    assert anon.get("/config", auth=("bob", "pw:1")).status_code == 401
    assert anon.get("/config", auth=("ann", "pw:1")).status_code == 200


def test_access_options_are_checked():
    from captioner.studio.app import StudioStartError, access_policy

    assert access_policy(False, None, None) is None  # loopback: open as before
    made = access_policy(True, None, None)
    assert made.token and len(made.token) >= 32 and not made.users  # --listen: a random token
    assert access_policy(True, None, None).token != made.token
    assert access_policy(True, "my-own-token", None).token == "my-own-token"
    assert access_policy(False, "my-own-token", None).token == "my-own-token"  # asked for on loopback too
    only_password = access_policy(True, None, "ann:pw")
    assert only_password.token is None and only_password.users == {"ann": "pw"}
    for bad in [("", None), ("short", None), ("has space in it", None), (None, "nopassword"), (None, ":pw"),
                (None, "ann:")]:
        with pytest.raises(StudioStartError):
            access_policy(True, *bad)


@pytest.mark.slow
def test_listen_needs_the_printed_token(tiny_model_dir, tmp_path):
    studio = StudioProcess(tiny_model_dir, tmp_path / "listen", extra=["--listen"]).wait(ready=(200, 401, 403))
    try:
        for path in ["/", "/config", "/gradio_api/info"]:
            r = httpx.get(studio.url + path, timeout=10)
            assert r.status_code in (401, 403), (path, r.status_code)
        deadline = time.monotonic() + 30
        while "?token=" not in studio.output() and time.monotonic() < deadline:
            time.sleep(0.5)
        line = next(line for line in studio.output().splitlines() if "?token=" in line)
        token = line.split("?token=")[1].split()[0]
        with httpx.Client(base_url=studio.url, timeout=30, follow_redirects=True) as browser:
            r = browser.get("/?token=" + token)
            assert r.status_code == 200 and "gradio" in r.text.lower()
            assert browser.get("/config").status_code == 200
        from gradio_client import Client
        c = Client(studio.url, verbose=False, analytics_enabled=False, download_files=False,
                   headers={"Authorization": f"Bearer {token}"})
        assert "items" in c.predict("", 1, api_name="/search")
    finally:
        studio.stop()


# ---------------------------------------------------------------------------- Gradio's run history: off
class FakeHub:
    """An HTTP server on 127.0.0.1 that records every request (HF_ENDPOINT points at it)."""

    def __init__(self):
        import http.server
        import threading

        self.requests: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                hub.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.mark.slow
def test_no_run_history_goes_to_a_hub_bucket(tiny_model_dir, tmp_path, photo):
    """A token, a bucket named by the request header and by the environment, the hub's offline switch off:
    nothing reaches the (fake) hub, and Gradio's run-history routes are gone."""
    from gradio_client import Client, handle_file

    hub = FakeHub()
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "x" * 34, "HF_HUB_OFFLINE": "0",
           "GRADIO_HISTORY_BUCKET": "someone/runs", "GRADIO_RUN_HISTORY": "True"}
    studio = StudioProcess(tiny_model_dir, tmp_path / "history", env=env).wait()
    try:
        c = Client(studio.url, verbose=False, analytics_enabled=False, download_files=False,
                   headers={"x-gradio-history-bucket": "someone/photos"})
        c.predict([handle_file(str(photo))], 1, 5, api_name="/caption")
        c.predict("", 1, api_name="/search")
        time.sleep(3)  # the recorder runs after the answer
        assert hub.requests == [], hub.requests
        with httpx.Client(base_url=studio.url, timeout=30) as page:
            as_page(page)
            for path in ["/gradio_api/runs", "/gradio_api/run-history/buckets", "/gradio_api/run-history/records"]:
                assert page.get(path, headers={"x-gradio-history-bucket": "someone/photos"}).status_code == 404, path
            r = page.post("/gradio_api/run-history/connect", json={"bucket_id": "someone/photos"})
            assert r.status_code in (403, 404), r.status_code
            assert page.get("/config").json().get("run_history") is False
        assert hub.requests == [], hub.requests
    finally:
        studio.stop()
        hub.close()


def test_the_token_link_redirects_on_this_site_only():
    from captioner.studio.guard import Access

    app, client = guarded(access=Access(token="a-token-for-the-redirect"))
    client.follow_redirects = False
    r = client.get("http://127.0.0.1:7860//evil.example/x?token=a-token-for-the-redirect&view=1")
    assert r.status_code == 303 and r.headers["location"] == "/evil.example/x?view=1"
    assert client.get("http://127.0.0.1:7860/").status_code == 200 and app.calls  # the cookie it set


def test_page_cookies_are_signed_per_studio_process():
    from captioner.studio.guard import PageTokens

    a, b = PageTokens(), PageTokens()
    token = a.issue()
    assert a.valid(token) and not b.valid(token) and a.cookie_name != b.cookie_name  # a new studio: new ones
    nonce, signature = token.split(".")
    for bad in [None, "", nonce, f"{nonce}.", f".{signature}", f"{nonce}x.{signature}", f"{nonce}.{signature}.x",
                f"{nonce}.{'0' * 32}", "../../x.y"]:
        assert not a.valid(bad), bad
    assert "HttpOnly" in a.set_cookie() and "SameSite=Strict" in a.set_cookie()
