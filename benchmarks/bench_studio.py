"""Benchmark the studio's overhead: caption round trip through the app vs the engine alone, and what
the user waits for in Chromium, this checkout beside an earlier one.

    python -m benchmarks.bench_studio                       # the shipped default model
    python -m benchmarks.bench_studio --model DIR --runs 10 --beam 3 --photo dog.jpg
    python -m benchmarks.bench_studio --browser-only --before 474102e --browser-runs 5   # Chromium only

In Chromium (Playwright, /usr/bin/chromium), for this checkout ("after") and for the studio of the git
revision ``--before`` (default 474102e, the last one with the server-drawn attention GIFs; its ``src``
is extracted with ``git archive`` into a temporary folder and started from there; a revision that already
has the attention player, e.g. ``--before fb153ef``, is timed the same way as this checkout), it times:

* click to results: from the click on Caption (a plain mouse click at the button, sent by Playwright
  without its actionability checks; timed from the button's release, when the click happens) until
  every candidate card of the photo is shown with its attention picture (the GIF images decoded, or the
  player's attention canvas drawn over the photo and the photo's pictures loaded; polled at every
  animation frame), at beam 3 and 10, beside the engine's own time for the same photo and beam,
  measured in the same run. One photo is dropped on the file box before each click (not timed); the
  click then captions it the way a user's click does: in this checkout, by the studio's own route when
  the page holds the token the server gave it for that upload (the click waits for the token if it is
  not there yet), else by the Gradio event. Three figures: the wall clock in this process (Playwright's
  own round trips to the browser included, 20-50 ms), the same wait measured in the page (from the
  click event's time stamp to the task after the animation frame in which the results were first all
  there, i.e. painted), and the player's own "You waited" figure;
* switching photos: from the click on another photo (the old dropdown, the new overview) until its
  candidates are shown;
* the payload of one result at beam 10: the candidate cards' HTML (before) or the player's data
  (after), in bytes.

Starts the studio (``python -m captioner.studio``) on a free local port with a temporary
gallery, and loads the same model in this process. Then, alternating so both see the same
machine load, it times

* engine: ``Captioner.caption(photo, beam_size=beam, max_len=max_len)`` (decode the file, encode, beam search),
  called from a worker thread as the studio calls it (Gradio runs handlers in a thread pool;
  ``--engine-main-thread`` times it on the main thread instead: with PyTorch's OpenMP threads
  competing against another busy process, that can be many times slower);
* studio: ``Client.predict([handle_file(photo)], beam, max_len, api_name="/caption")`` through
  gradio_client: upload, queue, the same engine call, JSON back.

and prints the medians and their ratio (target: studio <= 1.5x engine). For information it also
times the same request over plain HTTP the way the browser sends it (upload, queue join, one
server-sent-events stream), which shows how much of the gradio_client figure is the client's own
waiting (it polls for messages every 50 ms in background threads), and what the page then draws
(candidate cards with the attention GIFs), a step API callers never pay for.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.oracles.photos import FLICKR as FLICKR_DIR  # the test oracles: photo generators
from tests.oracles.photos import mandelbrot_photo

from benchmarks._stats import load_text

ROOT = Path(__file__).resolve().parents[1]

FLICKR = FLICKR_DIR / "images" / "1000268201_693b08cb0e.jpg"
TARGET = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_photo(folder: Path) -> Path:
    if FLICKR.is_file():
        return FLICKR
    return mandelbrot_photo(folder / "bench.jpg")


def start_studio(model: Path, gallery: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "captioner.studio", "--model", str(model),
                                 "--gallery", str(gallery), "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            sys.exit(f"the studio exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.terminate()
                sys.exit(f"the studio did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.5)


class RawHttp:
    """The /caption call without gradio_client: upload, queue join, read the event stream."""

    def __init__(self, url: str):
        import httpx
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=120)
        deps = self.http.get(f"{self.url}/config").json()["dependencies"]
        self.fn_index = next(d.get("id", i) for i, d in enumerate(deps) if d.get("api_name") == "caption")

    def caption(self, photo: Path, beam: int, max_len: int) -> None:
        import uuid
        with open(photo, "rb") as fh:
            (path,) = self.http.post(f"{self.url}/gradio_api/upload", files={"files": (photo.name, fh)}).json()
        session = uuid.uuid4().hex[:12]
        # the photos, beam, length, "Add to the list", the session's list (a State: the server's own)
        data = [[{"path": path, "orig_name": photo.name, "meta": {"_type": "gradio.FileData"}}], beam, max_len,
                False, None]
        self.http.post(f"{self.url}/gradio_api/queue/join",
                       json={"data": data, "fn_index": self.fn_index, "session_hash": session,
                             "event_data": None, "trigger_id": None}).raise_for_status()
        with self.http.stream("GET", f"{self.url}/gradio_api/queue/data", params={"session_hash": session}) as s:
            for line in s.iter_lines():
                if '"process_completed"' in line:
                    if '"success": true' not in line and '"success":true' not in line:
                        raise RuntimeError(line[:300])
                    return
        raise RuntimeError("the event stream ended without a result")


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return (f"median {statistics.median(ms):7.1f} ms   min {ms[0]:7.1f}   max {ms[-1]:7.1f}   "
            f"(n={len(ms)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder (default: the shipped model in src/captioner/weights, if installed)")
    parser.add_argument("--photo", type=Path, default=None, help="photo to caption (default: a Flickr8k image)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=None, help="default: the model's own maximum")
    parser.add_argument("--engine-main-thread", action="store_true",
                        help="time the engine on the main thread (default: a worker thread, like the studio)")
    parser.add_argument("--browser-only", action="store_true", help="only the Chromium timings")
    parser.add_argument("--no-browser", action="store_true", help="no Chromium timings")
    parser.add_argument("--before", default="474102e",
                        help="git revision whose studio is timed beside this checkout's in Chromium ('' for none)")
    parser.add_argument("--browser-runs", type=int, default=5, help="Caption clicks per beam and studio")
    parser.add_argument("--browser-beams", default="3,10")
    args = parser.parse_args(argv)

    from captioner.pipeline import Captioner, default_model_dir

    model = args.model or default_model_dir()
    if not (Path(model) / "config.json").is_file():
        print(f"No model in {model}: the shipped default model is not installed yet.\n"
              "Pass one with --model DIR (e.g. a folder made by `captioner train`).", file=sys.stderr)
        return 2

    from gradio_client import Client, handle_file

    from captioner.inputs.images import open_image
    from captioner.studio import player

    if args.browser_only:
        with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
            return browser_bench(args, Path(model), Path(tmp))

    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        tmp = Path(tmp)
        photo = args.photo or default_photo(tmp)
        print(f"model {model}\nphoto {photo}  beam {args.beam}  runs {args.runs} (+{args.warmup} warm-up each)")
        proc, url = start_studio(Path(model), tmp / "gallery", tmp / "studio.log")
        try:
            engine = Captioner.load(model)
            max_len = args.max_len or engine.decoding.max_len
            pool = ThreadPoolExecutor(1)

            def engine_caption():
                if args.engine_main_thread:
                    return engine.caption(str(photo), beam_size=args.beam, max_len=max_len)
                return pool.submit(engine.caption, str(photo), beam_size=args.beam, max_len=max_len).result()

            client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
            try:
                raw = RawHttp(url)
            except Exception as exc:  # noqa: BLE001 - only informative; Gradio's protocol may change
                print(f"(plain HTTP timing unavailable: {exc})", file=sys.stderr)
                raw = None
            engine_t, studio_t, raw_t = [], [], []
            for i in range(args.warmup + args.runs):
                t0 = time.perf_counter()
                res = engine_caption()
                t1 = time.perf_counter()
                out = client.predict([handle_file(str(photo))], args.beam, max_len, api_name="/caption")
                t2 = time.perf_counter()
                if raw is not None:
                    try:
                        raw.caption(Path(photo), args.beam, max_len)
                    except Exception as exc:  # noqa: BLE001
                        print(f"(plain HTTP timing failed: {exc})", file=sys.stderr)
                        raw = None
                t3 = time.perf_counter()
                if res.error or out["photos"][0]["error"]:
                    sys.exit(f"captioning failed: {res.error or out['photos'][0]['error']}")
                if out["photos"][0]["candidates"][0]["caption"] != res.caption:
                    print("warning: the studio and the engine disagree on the caption", file=sys.stderr)
                if i >= args.warmup:
                    engine_t.append(t1 - t0)
                    studio_t.append(t2 - t1)
                    if raw is not None:
                        raw_t.append(t3 - t2)

            draw_t = []  # what the server now makes per result for the page: the player's data
            for _ in range(1 + max(3, args.runs // 3)):
                t0 = time.perf_counter()
                img = open_image(photo, draft_size=2 * player.DISPLAY_SIDE)
                player.photo_data(img, res.width, res.height)
                [player.candidate_data(c) for c in res.candidates]
                draw_t.append(time.perf_counter() - t0)
            draw_t = draw_t[1:]  # the first one warms up
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    e, s = statistics.median(engine_t), statistics.median(studio_t)
    ratio = s / e
    words = len(res.candidates[0].tokens) if res.candidates else 0
    print(f"\ncaption: \"{res.caption}\" ({words} words, {len(res.candidates)} candidates)")
    where = "main thread" if args.engine_main_thread else "worker thread"
    print(f"engine  Captioner.caption      {summary(engine_t)}   ({where})")
    print(f"studio  /caption round trip    {summary(studio_t)}")
    print(f"ratio   studio / engine        {ratio:.2f}x   (target <= {TARGET}x: "
          f"{'met' if ratio <= TARGET else 'NOT met'}; overhead {1000 * (s - e):.0f} ms)")
    if raw_t:
        print(f"http    /caption, no client    {summary(raw_t)}   "
              f"({statistics.median(raw_t) / e:.2f}x engine: the request as the browser sends it)")
    print(f"server  the player's data      {summary(draw_t)}   (the photo as a small JPEG, attention as bytes: "
          "what the page gets per result; 0.1.0 drew GIFs here)")
    if not args.no_browser:
        with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
            return browser_bench(args, Path(model), Path(tmp))
    return 0


# ---------------------------------------------------------------------------- in Chromium
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 180_000

#: When the results of the click are on screen, per Caption page (`page_kind`).  "after": the attention player
#: (a new result has a new nonce; every card shown; the canvas drawn).  "before": the candidate cards
#: (the old grid replaced; every card's GIF decoded).
SHOWN_JS = {
    "after": """([beam, nonce]) => { const v = document.querySelector('#photos-view');
        const r = v && v.querySelector('[data-nonce]');
        if (!r || r.dataset.nonce === nonce) { return false; }
        const cards = v.querySelectorAll('.pv-card'), heat = v.querySelector('.pv-heat');
        const pictures = [...v.querySelectorAll('.pv-detail img')];
        return cards.length === beam && !!heat && !!heat.dataset.drawn && pictures.length > 0
            && pictures.every(i => i.complete && i.naturalWidth > 0); }""",
    "before": """([beam]) => { const g = document.querySelector('#candidates .cand-grid:not([data-old])');
        if (!g) { return false; }
        const cards = g.querySelectorAll('.candidate-card'), imgs = g.querySelectorAll('img.cand-anim');
        return cards.length === beam && imgs.length === beam && [...imgs].every(i => i.complete && i.naturalWidth > 0); }""",
}
#: Before a click: the same wait, timed in the page (``window.__benchShown``: ms from the click event's
#: time stamp to the task after the animation frame in which ``SHOWN_JS`` first held, i.e. painted).
IN_PAGE_JS = """([shown, arg]) => { const test = eval(shown); window.__benchShown = null; let clickAt = null;
    const onClick = (e) => { if (e.target.closest && e.target.closest('#caption-button')) {
        clickAt = e.timeStamp; document.removeEventListener('click', onClick, true); } };
    document.addEventListener('click', onClick, true);
    const poll = () => { if (clickAt !== null && test(arg)) { setTimeout(() => { window.__benchShown = performance.now() - clickAt; }, 0); }
        else { requestAnimationFrame(poll); } };
    requestAnimationFrame(poll); }"""
#: Before a click: mark what is on screen now, so that the next result is told apart.
MARK_JS = {
    "after": """() => { const r = document.querySelector('#photos-view [data-nonce]'); return r ? r.dataset.nonce : ''; }""",
    "before": """() => { document.querySelectorAll('#candidates .cand-grid').forEach(g => g.dataset.old = '1'); return ''; }""",
}


def extract_revision(rev: str, folder: Path) -> Path:
    """``git archive REV src`` into ``folder``; returns the src folder."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def model_for(src: Path, model: Path, folder: Path) -> tuple[Path, list[str]]:
    """The model folder as the code in ``src`` can load it: when its ``decoding.json`` has settings that code
    does not know (a model folder made later), a copy (links to the other files) without them; returns
    (folder, the settings left out)."""
    settings = model / "decoding.json"
    if not settings.is_file():
        return model, []
    code = ("import dataclasses, json; from captioner.decoding.config import DecodingConfig; "
            "print(json.dumps([f.name for f in dataclasses.fields(DecodingConfig)]))")
    known = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                      env=dict(os.environ, PYTHONPATH=str(src))).stdout.strip().splitlines()[-1])
    values = json.loads(settings.read_text())
    dropped = sorted(k for k in values if k not in known)
    if not dropped:
        return model, []
    folder.mkdir(parents=True, exist_ok=True)
    for item in model.iterdir():
        if item.name != "decoding.json":
            (folder / item.name).symlink_to(item.resolve())
    (folder / "decoding.json").write_text(json.dumps({k: v for k, v in values.items() if k in known}, indent=2))
    return folder, dropped


def start_studio_from(src: Path, model: Path, gallery: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """The studio of the code in ``src`` (PYTHONPATH), on a free port."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)
    try:
        return start_studio(model, gallery, log_path)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def page_kind(src: Path) -> str:
    """Which Caption page the code in ``src`` has: "after" (the attention player, drawn in the browser) or
    "before" (candidate cards with server-drawn GIFs); the keys of `SHOWN_JS` and `MARK_JS`."""
    return "after" if (src / "captioner" / "studio" / "static" / "attention_player.js").is_file() else "before"


def payload_bytes(src: Path, model: Path, photo: Path, beam: int, generation: str) -> int:
    """Bytes sent to the page for one result at ``beam``: the old cards' HTML or the player's data."""
    code = {
        "before": ("from captioner.pipeline import Captioner; from captioner.studio import render; "
                   "import sys; c = Captioner.load(sys.argv[1]); r = c.caption(sys.argv[2], beam_size=int(sys.argv[3])); "
                   "print(len(render.candidate_cards(render.load_photo(sys.argv[2]), r.candidates).encode()))"),
        "after": ("from captioner.pipeline import Captioner; from captioner.storage import Gallery; "
                  "from captioner.studio.app import Studio; import sys, json, tempfile; "
                  "s = Studio(Captioner.load(sys.argv[1]), Gallery(tempfile.mkdtemp())); s.upload_dir = None; "
                  "_, st = s.photos.caption([sys.argv[2]], int(sys.argv[3]), 50); "
                  "print(len(json.dumps(s.photos.show_results(st)[1]).encode()))"),
    }[generation]
    out = subprocess.run([sys.executable, "-c", code, str(model), str(photo), str(beam)], check=True,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(src))).stdout
    return int(out.strip().splitlines()[-1])


def time_studio(url: str, generation: str, photos: list[Path], beams: list[int], runs: int, engine) -> dict:
    """Click-to-results per beam and photo switches, in Chromium, for one running studio; before each
    timed click, ``engine(photo, beam)`` times the engine alone on the same photo (the same machine load)."""
    from playwright.sync_api import sync_playwright

    out: dict = {"click": {}, "switch": [], "waited_in_page": {}, "engine": {}, "in_page": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            rows = "document.querySelectorAll('#photo-files tbody tr').length"
            for beam in beams:
                box = page.locator("#beam-size input[type=number]")
                box.fill(str(beam))
                box.press("Tab")
                times, waited, engine_t, in_page = [], [], [], []
                for i in range(runs + 1):  # the first one warms up
                    if i:
                        engine_t.append(engine(photos[i % 2], beam))
                    # one photo per click, the two in turn (the old page leaves a repeated result's
                    # cards untouched, so the next result could not be told apart)
                    page.locator("#photo-files input[type=file]").set_input_files(str(photos[i % 2]))
                    page.wait_for_function(f"{rows} === 1")
                    mark = page.evaluate(MARK_JS[generation])
                    page.evaluate(IN_PAGE_JS, [SHOWN_JS[generation], [beam, mark]])
                    # a plain mouse click where the button is: Playwright's page.click first waits for the
                    # button to be visible, stable (two animation frames) and enabled, ~50 ms that are not
                    # the user's wait; the wait starts when the button is released (the click)
                    page.locator("#caption-button").scroll_into_view_if_needed()
                    box = page.locator("#caption-button").bounding_box()
                    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                    page.mouse.down()
                    t0 = time.perf_counter()
                    page.mouse.up()
                    page.wait_for_function(SHOWN_JS[generation], arg=[beam, mark], polling="raf")
                    if i:
                        times.append(time.perf_counter() - t0)
                        page.wait_for_function("window.__benchShown !== null")
                        in_page.append(page.evaluate("window.__benchShown") / 1000)
                        if generation == "after":  # the page's own figures: click to drawn, and drawing
                            shown = page.locator("#photos-view .pv-waited")
                            ms, draw = shown.get_attribute("data-ms"), shown.get_attribute("data-draw-ms")
                            if ms and draw:
                                waited.append((int(ms) / 1000, int(draw) / 1000))
                    if generation == "before":  # its file box keeps its photos: empty it
                        page.locator("#photo-files button[aria-label='Clear']").first.click()
                        page.wait_for_function(f"{rows} === 0")
                out["click"][beam] = times
                out["waited_in_page"][beam] = waited
                out["in_page"][beam] = in_page
                out["engine"][beam] = engine_t
            # two photos in the list
            page.locator("#photo-files input[type=file]").set_input_files([str(x) for x in photos])
            page.wait_for_function(f"{rows} === {len(photos)}")
            mark = page.evaluate(MARK_JS[generation])
            page.click("#caption-button")
            page.wait_for_function(SHOWN_JS[generation], arg=[beams[-1], mark], polling="raf")
            # switching between the photos of the last result: until the other photo's name and every one of
            # its candidates (with its picture) are shown
            names = [x.name for x in photos]
            for i in range(2 * runs):
                name = names[(i + 1) % len(names)]
                t0 = time.perf_counter()
                try:
                    if generation == "after":
                        page.locator("#photos-view .pv-tile", has_text=name).click()
                        page.wait_for_function("""(name) => { const v = document.querySelector('#photos-view');
                            const h = v.querySelector('.pv-name'), c = v.querySelector('.pv-heat');
                            return h && h.textContent === name && v.querySelectorAll('.pv-card').length > 0
                                && c && !!c.dataset.drawn; }""", arg=name, polling="raf", timeout=60_000)
                    else:
                        page.locator("#photo-pick input").click()
                        page.locator("#photo-pick [role=option]", has_text=name).click()
                        page.wait_for_function("""(name) => { const h = document.querySelector('#candidates .photo-name');
                            const cards = document.querySelectorAll('#candidates .candidate-card');
                            const imgs = document.querySelectorAll('#candidates img.cand-anim');
                            return h && h.textContent === name && cards.length > 0 && imgs.length === cards.length
                                && [...imgs].every(i => i.complete && i.naturalWidth > 0); }""", arg=name,
                                               polling="raf", timeout=60_000)
                except Exception as exc:  # noqa: BLE001 - one stuck switch must not lose the other figures
                    print(f"({generation}: switching to {name} did not finish: {str(exc).splitlines()[0]})",
                          file=sys.stderr)
                    page.keyboard.press("Escape")
                    continue
                out["switch"].append(time.perf_counter() - t0)
        finally:
            browser.close()
    return out


def browser_bench(args, model: Path, tmp: Path) -> int:
    """Chromium timings for this checkout and the --before revision, side by side, with the engine's time."""
    if not Path(CHROMIUM).exists():
        print(f"(no Chromium timings: {CHROMIUM} is not installed)", file=sys.stderr)
        return 0
    from captioner.pipeline import Captioner

    # the studios' own upload folder: a studio stopping elsewhere on this machine deletes the uploads it
    # made, and an upload of the same photo by another studio has the same path in a shared folder
    os.environ["GRADIO_TEMP_DIR"] = str(tmp / "gradio")
    beams = [int(b) for b in args.browser_beams.split(",") if b.strip()]
    photos = [args.photo or default_photo(tmp)]
    second = tmp / "second.jpg"
    mandelbrot_photo(second)
    photos.append(second)
    studios = [("after", ROOT / "src")]
    if args.before:
        studios.insert(0, ("before", extract_revision(args.before, tmp / "before")))
    load_at_start = load_text()
    engine = Captioner.load(model)
    pool = ThreadPoolExecutor(1)

    def engine_time(photo: Path, beam: int) -> float:
        """The engine alone on a worker thread, as the studio calls it."""
        t0 = time.perf_counter()
        pool.submit(engine.caption, str(photo), beam_size=beam).result()
        return time.perf_counter() - t0

    engine_time(photos[0], beams[0])  # warm-up
    results, payload = {}, {}
    notes = []
    for generation, src in studios:
        their_model, dropped = model_for(src, model, tmp / f"model-{generation}")
        if dropped:
            notes.append(f"({generation}: its code does not know the model's decoding settings {', '.join(dropped)}: "
                         "it runs without them, i.e. with its own defaults)")
        proc, url = start_studio_from(src, their_model, tmp / f"gallery-{generation}", tmp / f"studio-{generation}.log")
        try:
            results[generation] = time_studio(url, page_kind(src), photos, beams, args.browser_runs, engine_time)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        payload[generation] = payload_bytes(src, their_model, photos[0], 10, page_kind(src))
    def med(xs):
        return f"{statistics.median(xs):6.2f} s" if xs else "     —  "

    label = {"before": f"before ({args.before})", "after": "after (this checkout)"}
    print(f"\nload average (1/5/15 min) at the start {load_at_start}, at the end {load_text()}  "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs)")
    print(f"\nIn Chromium: {photos[0].name} and {photos[1].name} in turn, one per Caption click, medians of "
          f"{args.browser_runs} clicks; then switching between the two; the CPU may be shared with other work: "
          "rerun on an idle machine")
    print(f"{'':34}" + "".join(f"{label[g]:>26}" for g, _ in studios) + f"{'engine alone':>16}"
          + "   (the engine timed between the 'after' clicks)")
    for beam in beams:
        row = f"click to results, beam {beam:<2}        "
        row += "".join(f"{med(results[g]['click'][beam]):>26}" for g, _ in studios)
        engine_t = results["after"]["engine"][beam]
        row += f"{med(engine_t):>16}"
        after = results["after"]["click"][beam]
        if after and engine_t:
            row += f"   after/engine {statistics.median(after) / statistics.median(engine_t):.2f}x (target <= 1.5x)"
        print(row)
        in_page = results["after"]["in_page"].get(beam)
        if in_page and engine_t:
            print(f"  (the same, timed in the page from the click event to the painted results: median "
                  f"{statistics.median(in_page):.2f} s, {statistics.median(in_page) / statistics.median(engine_t):.2f}x "
                  "the engine; 'before': " + (f"{statistics.median(results['before']['in_page'][beam]):.2f} s)"
                                              if results.get("before", {}).get("in_page", {}).get(beam) else "—)"))
        if "before" in results and results["before"]["engine"][beam]:
            print(f"  (the engine beside the 'before' clicks: median {statistics.median(results['before']['engine'][beam]):.2f} s)")
        waited = results["after"]["waited_in_page"].get(beam)
        if waited:
            own = statistics.median(w for w, _ in waited)
            print(f"  (the page's own 'You waited' figure, beam {beam}: median {own:.2f} s"
                  + (f", {own / statistics.median(engine_t):.2f}x the engine" if engine_t else "")
                  + f"; of which drawing the results {1000 * statistics.median(d for _, d in waited):.0f} ms)")
    print(f"{'switching photos':34}" + "".join(
        f"{1000 * statistics.median(results[g]['switch']):>23.0f} ms" if results[g]["switch"] else f"{'—':>26}"
        for g, _ in studios) + f"   (target < 300 ms; medians of {2 * args.browser_runs} switches)")
    for note in notes:
        print(note)
    print(f"{'payload of a result at beam 10':34}" + "".join(f"{payload[g] / 1024:>23.1f} KB" for g, _ in studios)
          + "   (target < 200 KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
