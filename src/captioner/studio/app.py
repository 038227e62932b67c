"""Captioner studio: a local web app (Gradio) to caption photos, compare beam candidates with their
attention, and keep the chosen captions in a searchable gallery.  This module makes the page and serves
it; each tab's events live in a module of their own: `captioner.studio.photos_tab` (Caption),
`captioner.studio.video_tab` (Video: a video captioned shot by shot, played with its captions as
subtitles) and `captioner.studio.gallery_tab` (Gallery); `captioner.studio.values` checks the event
values they all receive.

Start it with ``captioner studio`` or, without the CLI::

    python -m captioner.studio --model DIR --gallery DIR --port 7860 [--listen]

It listens on 127.0.0.1 only unless ``--listen`` (then 0.0.0.0, and a login is required: a random
access token printed at start, ``--token`` or ``--auth user:password``; see `access_policy`); it
sends nothing anywhere: Gradio analytics and Gradio's run history (uploads of runs to a Hugging Face
bucket) are off, and no share link is made. All the work is done by the captioner
(`captioner.runtime.lean.LeanCaptioner`, without PyTorch, unless ``--runtime torch``, a GPU ``--device`` or a
model folder without its ONNX runtime asks for `captioner.pipeline.Captioner`; see `captioner.studio.engines`),
`captioner.viz` (attention pictures) and `captioner.storage` (the gallery); this module only wires them to
widgets.

What the studio trusts
----------------------
Nothing the browser sends names a file or a folder: the photos are Gradio uploads (Gradio
refuses paths it did not receive itself), the gallery grid and the item details are drawn from
items the server looked up (kept in the session, never sent back by the browser), and event
arguments are indexes and ids checked against the session's own lists.  A gallery video opened in
the Gallery tab plays from the studio's own copy (a hard link where possible) in its temporary
folder, named by the file's sha256 (`VideoTab.served_video`); the gallery's folder is never served.
In front of Gradio,
`captioner.studio.guard.StudioGuard` answers only requests addressed to this computer (DNS
rebinding), asks for the login when there is one, refuses state-changing requests from other web
sites (``Origin``), sends no CORS header to any other origin, lets scripts run only the API events
(`API_EVENTS`: the three below, the Video tab's and the Imagine tab's; every other event needs the
cookie the studio's page gets when it is served), and
caps request sizes; ``--max-upload-mb`` (default 50) caps each uploaded file.  Emptying the trash
and deleting an item also need a one-time code the server gives the page just before its
confirmation box (`sessions.Confirmations`).  The one route the studio adds
beside Gradio's, the Caption tab's ``POST /studio/caption`` (one photo, drawn at once: see
`captioner.studio.photos_tab`), takes no path either: only a token the server gave that page for
the upload in its file box (used once, within the session's lifetime), as JSON, from the studio's
own ``Origin``.  What a session keeps is
bounded (`captioner.studio.sessions`): the list of captioned photos (at most ``MAX_PHOTOS``,
no rendered pictures) for ``SESSION_TTL_S`` seconds of idleness.  The Caption tab's pictures go
to the browser as data (the photo once as a small JPEG, the attention maps as bytes) and are drawn
there (`captioner.studio.player`); a caption being edited stays in the browser until it is saved.

Scripting the studio (gradio_client)
------------------------------------
The three main events are API endpoints. ``/save`` works on the list of photos ``/caption`` made in the
same client session, so use one ``Client`` for both::

    from gradio_client import Client, handle_file

    client = Client("http://127.0.0.1:7860/", verbose=False, analytics_enabled=False)

    # caption one or more photos: (files, beam size 1-20, maximum caption length in words 1-100[, add]);
    # add=True keeps the session's list and adds these photos to it (else they replace it)
    result = client.predict([handle_file("dog.jpg"), handle_file("cat.png")], 3, 20, api_name="/caption")
    # -> {"model": "captioner", "beam_size": 3, "max_len": 20, "captioned": 2, "failed": 0,
    #     "message": "...",
    #     "photos": [{"index": 0, "name": "dog.jpg", "width": 500, "height": 375, "error": None,
    #                 "tags": [{"label": "dog", "score": 0.97}], "confidence": 0.81, "warnings": [],
    #                 "candidates": [{"index": 0, "caption": "a dog runs on the grass", "tokens": [...],
    #                                 "score": -6.1, "normalized_score": -0.87, "confidence": 0.81}, ...]},
    #                ...]}
    # a photo that cannot be read has "error": "<readable reason>" and no candidates; the others
    # are captioned all the same. "index" is the photo's place in the session's list (what /save takes).

    # save a candidate to the gallery: (photo index, candidate index, caption text)
    saved = client.predict(0, 0, "", api_name="/save")                  # candidate 0 as it is
    saved = client.predict(0, 1, "a brown dog on a lawn", api_name="/save")  # edited text
    # -> {"id": 12, "name": "dog.jpg", "caption": "...", "message": "..."}
    #    or {"id": None, "error": "<readable reason>"} (e.g. the same photo and caption are already saved)

    # with --listen, --token or --auth the studio needs a login; a script sends it as a header:
    # Client(url, headers={"Authorization": "Bearer TOKEN"})  or  {"Authorization": "Basic ..."}

    # search the gallery's captions: (query, page); an empty query lists everything, newest first
    found = client.predict("dog", 1, api_name="/search")
    # -> {"query": "dog", "total": 1, "page": 1, "pages": 1, "per_page": 24, "match_all": True,
    #     "items": [{"id": 12, "caption": "...", "original_name": "dog.jpg", "width": 500,
    #                "height": 375, "saved_at": "...", "model_name": "...", "beam_size": 3,
    #                "candidates": [...], "image_path": "..."}]}
"""
from __future__ import annotations

import errno
import html
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path

# Nothing leaves the machine: set before Gradio is imported (it reads these at import/launch).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from captioner.errors import CaptionerError  # noqa: E402
from captioner.storage import Gallery, GalleryError, default_gallery_dir  # noqa: E402
from captioner.studio import gradio_private, render, sessions  # noqa: E402
from captioner.studio.config import DEFAULT_MAX_UPLOAD_MB, MAX_LEN  # noqa: E402
from captioner.studio.engines import Engines  # noqa: E402
from captioner.studio.gallery_tab import GalleryTab  # noqa: E402
from captioner.studio.guard import Access, EventPolicy, HostPolicy, StudioGuard  # noqa: E402
from captioner.studio.imagine_tab import build_imagine_tab  # noqa: E402
from captioner.studio.learn_tab import LearnTab  # noqa: E402
from captioner.studio.photos_tab import PhotosTab  # noqa: E402
from captioner.studio.values import MAX_PHOTOS, SESSION_TTL_S, upload_folder  # noqa: E402
from captioner.studio.video_tab import VideoTab  # noqa: E402

log = logging.getLogger("captioner.studio")

#: Largest request body other than an upload (JSON event data).
MAX_BODY_BYTES = 4 << 20
#: The events scripts may call (the HTTP API: the three documented here, and the Video and Imagine
#: tabs' own, documented in `captioner.studio.video_tab` and `captioner.studio.imagine_tab`); every
#: other event needs the studio's page.
API_EVENTS = ("caption", "save", "search", "caption_video", "save_video", "imagine")
#: Shortest --token accepted.
MIN_TOKEN_CHARS = 12


class StudioStartError(CaptionerError):
    """The studio could not start (the port is taken, the address is wrong...)."""


class Studio:
    """The studio: what its tabs share (the engine, the gallery, the limits) and the page around them.

    Each tab's events are methods of its own object: `photos` (`PhotosTab`), `video` (`VideoTab`),
    `library` (`GalleryTab`).  ``captioner``: a `captioner.runtime.lean.LeanCaptioner` (torch-free) or a
    `captioner.pipeline.Captioner`; ``engines``: the runtime learned models load on and PyTorch's twin for what
    only PyTorch does (`captioner.studio.engines`; None: the runtime ``captioner`` runs on).
    """

    def __init__(self, captioner, gallery: Gallery, *, read_only: bool | None = None,
                 t2i_model: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
                 engines: Engines | None = None):
        self.captioner = captioner
        self.engines = engines if engines is not None else Engines.like(captioner)
        self.gallery = gallery
        self.model_name = captioner.name
        decoding = captioner.decoding  # the model's default decoding
        self.default_len = decoding.max_len
        self.max_len_limit = MAX_LEN  # the sliders' limits are DecodingConfig's (captioner.studio.config)
        self.default_beam = decoding.beam_size
        self.read_only = gallery.read_only if read_only is None else read_only
        #: Photos must be files Gradio received (None: any path, for Python callers and tests).
        #: Gradio checks this too, but only in an app made by ``launch()``; the studio checks it itself.
        self.upload_dir: Path | None = upload_folder()
        self.thumbs = Path(tempfile.gettempdir()) / "captioner-studio" / "thumbs"
        self.exports = Path(tempfile.gettempdir()) / "captioner-studio" / "exports"
        self.demo: gr.Blocks | None = None
        self.header = None  # the title line's `gr.HTML` (`header_html`), made by `build`
        self._heavy_ids: list[int] = []  # outputs whose values are big HTML (see `forget_rendered`)
        self.photos = PhotosTab(self)
        self.video = VideoTab(self)
        self.library = GalleryTab(self)
        #: The Models tab: learning from the gallery's edits (from ``model_dir``, the started model's folder:
        #: None for the default one) and the model picker, which switches ``captioner`` and ``model_name``.
        self.learning = LearnTab(self, model_dir)
        #: The user's own text-to-image model folder for the Imagine tab (None: $CAPTIONER_T2I_MODEL).
        self.t2i_model = t2i_model
        self.imagine = None  # the Imagine tab (`build_imagine_tab`), made by `build`
        #: One-time codes for the destructive events' confirmation boxes (`confirm_code`, `confirmed`).
        self.confirmations = sessions.Confirmations()

    def confirm_code(self, action: str):
        """The event a destructive button runs first: a new one-time code for ``action`` in this
        session, which the page sends back only if the user says yes in its confirmation box."""
        def ask(request: gr.Request = None) -> str:
            return self.confirmations.ask(getattr(request, "session_hash", None), action)
        ask.__name__ = f"ask_{action}"
        return ask

    def confirmed(self, action: str, code, request) -> bool:
        """Whether ``code`` is the one `confirm_code` gave this session for ``action`` (used up)."""
        return self.confirmations.take(getattr(request, "session_hash", None), action, code)


    def forget_rendered(self, request: gr.Request):
        """After pictures went to the browser: drop Gradio's per-session copy of them (see `sessions`)."""
        if self.demo is not None and request is not None:
            sessions.forget_values(self.demo, request.session_hash, self._heavy_ids)


    def read_only_message(self) -> str:
        return (f"The gallery at {self.gallery.folder} is read-only: it can be browsed and searched, "
                "but nothing can be saved or deleted. Start the studio with a gallery folder you can write to.")

    def read_only_note(self) -> str:
        return f"⚠️ {html.escape(self.read_only_message())}" if self.read_only else ""

    def header_html(self) -> str:
        """The page's title line: the model in use (``model_name``), the gallery, read-only or not."""
        ro = " · <b>read-only</b>" if self.read_only else ""
        return (f"<style>{render.CSS}</style><div class='studio-title'><h1>Captioner Studio</h1>"
                f"<p>Model <b>{html.escape(self.model_name)}</b> · gallery "
                f"<code>{html.escape(str(self.gallery.folder))}</code>{ro} · everything stays on this computer</p>"
                "</div>")

    # ------------------------------------------------------------------ layout
    def build(self) -> gr.Blocks:
        # Uploaded files older than a day are removed from Gradio's cache (hourly); saved photos
        # live in the gallery's own folder.
        with gr.Blocks(title="Captioner Studio", analytics_enabled=False, fill_width=False,
                       delete_cache=(3600, 86400)) as demo:
            # the Models tab's switch redraws it (`LearnTab.use_model`), so it names the model in use
            self.header = gr.HTML(self.header_html(), elem_id="studio-header", js_on_load=None)
            session = gr.State({"photos": []}, time_to_live=SESSION_TTL_S)
            with gr.Tabs(elem_id="studio-tabs"):
                heavy = self.photos.build(session)
                heavy += self.video.build(self)
                heavy += self.library.build()
                heavy += build_imagine_tab(self, self.t2i_model)
                heavy += self.learning.build()
            self._heavy_ids = [gradio_private.component_id(c) for c in heavy]
        self.demo = demo
        return demo


def build_app(captioner, gallery: Gallery) -> gr.Blocks:
    """The studio's Blocks for a loaded `Captioner` and an open `Gallery` (see the module docstring)."""
    return Studio(captioner, gallery).build()


def open_gallery(gallery_dir: str | os.PathLike | None) -> Gallery:
    """Open (or create) the gallery folder; `GalleryError` with a readable reason if it cannot be."""
    folder = Path(gallery_dir if gallery_dir is not None else default_gallery_dir()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise GalleryError(f"The gallery '{folder}' is not a folder: pass a folder with --gallery.")
    try:
        return Gallery(folder)
    except GalleryError as exc:
        if folder.is_dir() and not os.access(folder, os.W_OK):
            raise GalleryError(f"{exc} (the folder is read-only)") from exc
        raise


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or `StudioStartError` saying why not (e.g. the port is taken)."""
    if not 0 < int(port) < 65536:
        raise StudioStartError(f"--port must be between 1 and 65535, not {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise StudioStartError(f"cannot serve on '{host}': {exc.strerror or exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a just-stopped studio's port is fine
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StudioStartError(f"port {port} is already in use on {host} (is another studio running?); "
                                   "choose another one with --port") from None
        raise StudioStartError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def host_policy(host: str, listen: bool, allowed_hosts=()) -> HostPolicy:
    """Loopback always; the ``--host`` name and the ``--allowed-host`` names; any IP address with ``--listen``."""
    names = list(allowed_hosts or ())
    if host and host not in ("0.0.0.0", "::", ""):
        names.append(host)
    try:
        return HostPolicy(names, allow_addresses=listen)
    except ValueError as exc:
        raise StudioStartError(f"--allowed-host: {exc}") from None


def access_policy(listen: bool, token: str | None = None, auth: str | None = None) -> Access | None:
    """The login: ``--token`` and/or ``--auth user:password``; with ``--listen`` and neither, a random
    token (`launch` prints the address with it).  None: no login (loopback, the default).  The token and
    the password are kept in memory only."""
    users = {}
    if auth is not None:
        user, sep, password = str(auth).partition(":")
        if not sep or not user or not password:
            raise StudioStartError("--auth must be user:password (neither part empty)")
        users[user] = password
    if token is not None:
        token = str(token)
        if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token) or not token.isprintable():
            raise StudioStartError(f"--token must be at least {MIN_TOKEN_CHARS} characters, without spaces")
    elif listen and not users:
        token = secrets.token_urlsafe(24)
    if token is None and not users:
        return None
    return Access(token=token, users=users)


def api_events(demo: gr.Blocks) -> EventPolicy:
    """The events scripts may run without the studio's page: the `API_EVENTS`, by name or fn_index."""
    fns = {i: fn for i, fn in demo.fns.items()
           if fn.api_name in API_EVENTS and fn.api_visibility in ("public", "undocumented")}
    return EventPolicy(fns, API_EVENTS)


def make_app(demo: gr.Blocks, hosts: HostPolicy, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
             studio: Studio | None = None, access: Access | None = None):
    """The ASGI app serving ``demo``: Gradio mounted at / behind `StudioGuard` (outermost, so it
    also answers CORS preflights and nothing reaches Gradio's CORS handling before it); with the
    ``studio`` that built ``demo``, also the Caption tab's own route for one photo
    (`captioner.studio.photos_tab.DIRECT_ROUTE`).  ``access``: the login (`access_policy`).
    Gradio's run history is off and its routes are gone."""
    from fastapi import FastAPI

    max_upload = int(float(max_upload_mb) * 2**20)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(StudioGuard, hosts=hosts, max_body_bytes=MAX_BODY_BYTES,
                       max_upload_bytes=max_upload * MAX_PHOTOS + (1 << 20), events=api_events(demo),
                       access=access)
    gradio_private.set_session_capacity(demo, sessions.MAX_SESSIONS)  # read when the app is made (StateHolder)
    if studio is not None and studio.demo is demo:
        studio.photos.add_routes(app)  # before Gradio is mounted at /, so that it is matched first
    # run_history=False: Gradio records no run (it would upload runs, photos included, to a Hugging
    # Face bucket named by a request header or $GRADIO_HISTORY_BUCKET when it finds a token).
    app = gr.mount_gradio_app(app, demo, path="/", footer_links=["api"], show_error=False,
                              max_file_size=max_upload, ssr_mode=False, mcp_server=False,
                              enable_monitoring=False, pwa=False, css=render.CSS, run_history=False)
    _drop_run_history_routes(app)
    # Gradio checks that file inputs are its own uploads only in an app it "launched"; a mounted
    # one is not, so say it is (the studio's handlers check their photos as well).
    gradio_private.mark_launched(demo)
    return app


def _drop_run_history_routes(app) -> int:
    """Remove Gradio's run-history page and routes (``/gradio_api/runs``, ``/gradio_api/run-history/...``)
    from the mounted Gradio app; `StudioGuard` answers 404 there as well.  Returns how many went."""
    from starlette.routing import Mount

    dropped = 0
    for mount in [r for r in app.routes if isinstance(r, Mount)]:
        router = getattr(mount.app, "router", None)
        if router is None:
            continue
        keep = [r for r in router.routes
                if not str(getattr(r, "path", "")).startswith(("/gradio_api/runs", "/gradio_api/run-history"))]
        dropped += len(router.routes) - len(keep)
        router.routes[:] = keep
    return dropped


def serve(app, sock: socket.socket, url: str, *, inbrowser: bool = False, quiet: bool = False,
          note: str = "") -> None:
    """Serve ``app`` on the bound socket until Ctrl+C / SIGTERM (blocks); ``note``: a line printed after the address."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3,
                                           server_header=False))
    if not quiet or inbrowser:
        def announce():
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                if not quiet:
                    print(f"Captioner studio: {url}  (Ctrl+C stops it)", flush=True)
                    if note:
                        print(note, flush=True)
                if inbrowser:
                    import webbrowser
                    webbrowser.open(url)
        threading.Thread(target=announce, name="studio-announce", daemon=True).start()
    server.run(sockets=[sock])


def open_studio(model_dir: str | os.PathLike | None = None, gallery_dir: str | os.PathLike | None = None, *,
                runtime: str = "onnx", device: str = "cpu", t2i_model: str | os.PathLike | None = None) -> Studio:
    """The studio of model folder ``model_dir`` (None: the shipped model) and gallery ``gallery_dir``, its model
    loaded on ``runtime`` ("onnx": without importing PyTorch where the folder allows it; "torch") and
    ``device`` (`captioner.studio.engines`), before its page is built: what `launch` serves."""
    engines = Engines(runtime, device)
    captioner = engines.load(model_dir)
    return Studio(captioner, open_gallery(gallery_dir), t2i_model=t2i_model, model_dir=model_dir, engines=engines)


def launch(model_dir: str | os.PathLike | None = None, gallery_dir: str | os.PathLike | None = None,
           host: str = "127.0.0.1", port: int = 7860, listen: bool = False, *, inbrowser: bool = False,
           quiet: bool = False, allowed_hosts=(), max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
           t2i_model: str | os.PathLike | None = None, token: str | None = None, auth: str | None = None,
           runtime: str = "onnx", device: str = "cpu"):
    """Load the model and the gallery, then serve the studio (blocks until stopped).

    ``runtime``/``device``: what the model runs on (`open_studio`); the default captions without PyTorch,
    which is imported only for what needs it (learning, the Imagine tab, videos the torch-free runtime does
    not caption, ``runtime="torch"`` or a GPU ``device``).

    ``listen=True`` serves on every network interface (0.0.0.0) instead of ``host``; requests
    must then be addressed to a loopback name, an IP address or one of ``allowed_hosts``, and carry
    a login: ``token`` (a random one is made and printed if neither it nor ``auth`` is given) or
    ``auth`` ("user:password"); either one also asks for a login on loopback.
    Raises `CaptionerError` (`StudioStartError` for a taken port) / `GalleryError` with a
    readable message if the studio cannot start.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not float(max_upload_mb) > 0:
        raise StudioStartError(f"--max-upload-mb must be more than 0, not {max_upload_mb}")
    bind = "0.0.0.0" if listen else host
    hosts = host_policy(host, listen, allowed_hosts)
    access = access_policy(listen, token, auth)
    sock = listen_socket(bind, port)  # first: a taken port is said at once, not after loading the model
    try:
        studio = open_studio(model_dir, gallery_dir, runtime=runtime, device=device, t2i_model=t2i_model)
        if studio.read_only:
            log.warning("studio: %s", studio.read_only_message())
        demo = studio.build()
        demo.queue(default_concurrency_limit=2)
        app = make_app(demo, hosts, max_upload_mb, studio, access)
        reaper = sessions.Reaper(demo).start()
        # the first Caption should not pay the engine's first-call costs (its sessions, PyTorch's kernels): warm
        # the engine up meanwhile
        threading.Thread(target=studio.photos.warm_up, name="studio-warm-up", daemon=True).start()
    except BaseException:
        sock.close()
        raise
    shown = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    note = ""
    if access is not None and access.token:
        url += f"?token={access.token}"  # printed once; stored nowhere
        quiet = False
    if listen:
        note = ("From another computer, use this computer's address instead of 127.0.0.1"
                + (" (the token is needed there too)." if access is not None and access.token else "."))
    try:
        serve(app, sock, url, inbrowser=inbrowser, quiet=quiet, note=note)
    finally:
        reaper.stop()
        sock.close()

