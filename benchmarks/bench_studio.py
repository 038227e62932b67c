"""Benchmark the studio's overhead: caption round trip through the app vs the engine alone.

    python benchmarks/bench_studio.py                       # the shipped default model
    python benchmarks/bench_studio.py --model DIR --runs 10 --beam 3 --photo dog.jpg

Starts the studio (``python -m captioner.studio.app``) on a free local port with a temporary
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test oracles: photo generators

from oracles.photos import FLICKR as FLICKR_DIR  # noqa: E402
from oracles.photos import mandelbrot_photo  # noqa: E402

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
        proc = subprocess.Popen([sys.executable, "-m", "captioner.studio.app", "--model", str(model),
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
        data = [[{"path": path, "orig_name": photo.name, "meta": {"_type": "gradio.FileData"}}], beam, max_len]
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
    args = parser.parse_args(argv)

    from captioner.pipeline import Captioner, default_model_dir

    model = args.model or default_model_dir()
    if not (Path(model) / "config.json").is_file():
        print(f"No model in {model}: the shipped default model is not installed yet.\n"
              "Pass one with --model DIR (e.g. a folder made by `captioner train`).", file=sys.stderr)
        return 2

    from gradio_client import Client, handle_file

    from captioner.studio import render

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

            img = render.load_photo(photo)
            render.candidate_cards(img, res.candidates)  # warm-up
            draw_t = []
            for _ in range(max(3, args.runs // 3)):
                t0 = time.perf_counter()
                render.candidate_cards(img, res.candidates)
                draw_t.append(time.perf_counter() - t0)
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
    print(f"page    cards + attention GIFs {summary(draw_t)}   (browser only, after /caption)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
