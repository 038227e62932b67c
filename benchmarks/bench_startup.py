"""Start-up cost of the `captioner` command, as a user pays it from the shell: whole processes, timed side by
side in one run with `python -c "import torch"` (so the ratios travel to another machine).

    python -m benchmarks.bench_startup                       # 10 rounds, find over 10,000 items, studio too
    python -m benchmarks.bench_startup --runs 5 --items 2000 --skip studio

Each round runs every command once, in turn (so a change in the machine's load hits them all alike); the
figures are the median wall time and the median (and largest) peak resident memory of each command, from
`benchmarks._stats.peak_rss` (a small launcher's RUSAGE_CHILDREN). One round first, not counted, warms the
file cache and the per-machine ONNX export cache.

- `import torch`: `python -c "import torch"`, the yardstick.
- `import onnxruntime, numpy, PIL`: what inference without PyTorch needs at the least.
- `captioner --help`.
- `LeanCaptioner` (`captioner.runtime.lean`): the same photo captioned with the model folder's ONNX files
  and numpy only, with the model's decoding (grounding, support penalty, new words), tags and confidence.
- `captioner caption photo.jpg`: one photo (scikit-image's `chelsea`, 451 x 300, saved as JPEG), the shipped
  model, its default decoding, on the torch-free runtime (the default); and the same with `--runtime torch`
  (the PyTorch path, what the command ran on before).
- `captioner find "a cat ..."`: over a synthetic gallery of --items items (default 10,000), built once under
  --work: the grids and captions of a handful of scikit-image photos (captioned by the model), cycled,
  written straight into SQLite with `benchmarks.bench_library.build_gallery` (which also writes the
  pooled-vector cache), so only the command is timed; and the same with `--runtime torch`.
- studio: `captioner studio` (`python -m captioner.studio`) start until its first page is served.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from benchmarks._stats import load_text, peak_rss

ROOT = Path(__file__).resolve().parents[1]
SKIMAGE_PHOTOS = ["chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"]
QUERY = "a cat sitting on a couch"
#: torch-free captioning (captioner.runtime.lean): the model's decoding, tags, confidence (no sentence bank)
LEAN = ("import sys; from captioner.runtime.lean import LeanCaptioner; "
        "r = LeanCaptioner(sys.argv[2] or None).caption(sys.argv[1]); print(r.caption, r.confidence)")


def captioner_command() -> list[str]:
    """The installed console script when there is one (what a user runs), else `python -m captioner`."""
    script = shutil.which("captioner")
    return [script] if script else [sys.executable, "-m", "captioner"]


def skimage_photo(name: str, folder: Path) -> Path:
    import skimage.data
    from PIL import Image

    path = folder / f"{name}.jpg"
    if not path.is_file():
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path, quality=92)
    return path


def build_gallery(folder: Path, n: int, model: str | None, work: Path) -> Path:
    """A gallery of n items for `find` (reused when `folder` already holds one of n items)."""
    from benchmarks.bench_library import build_gallery as build
    from captioner.pipeline import Captioner

    captioner = Captioner.load(model)
    photos = [skimage_photo(name, work) for name in SKIMAGE_PHOTOS]
    results = list(captioner.caption_many(photos, keep_features=True))
    grids = __import__("numpy").stack([r.features for r in results])
    cands = [[c.caption for c in r.candidates] for r in results]
    build(folder, n, [SimpleNamespace(grids=grids, candidates=cands)], captioner.name).close()
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def studio_first_page(model: str | None, gallery: Path, log: Path) -> float:
    """Seconds from starting the studio to its first page served."""
    port = free_port()
    cmd = [sys.executable, "-m", "captioner.studio", "--gallery", str(gallery), "--port", str(port)]
    if model:
        cmd += ["--model", model]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the studio exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    page.read()
                return time.perf_counter() - start
            except OSError:
                if time.perf_counter() - start > 300:
                    raise SystemExit(f"the studio did not start:\n{log.read_text(errors='replace')}") from None
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="rounds (default 10)")
    p.add_argument("--items", type=int, default=10_000, help="gallery size for find (default 10000; 0: skip find)")
    p.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "captioner-bench-startup"),
                   help="where the photo and the gallery are kept between runs")
    p.add_argument("--skip", nargs="*", default=[], choices=["studio", "find", "torch", "lean"], help="sections to skip")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    photo = skimage_photo("chelsea", work)
    model = ["--model", args.model] if args.model else []
    cap = captioner_command()
    commands = {}
    if "torch" not in args.skip:
        commands['python -c "import torch"'] = [sys.executable, "-c", "import torch"]
    commands['python -c "import onnxruntime, numpy, PIL.Image"'] = [
        sys.executable, "-c", "import onnxruntime, numpy, PIL.Image"]
    commands["captioner --help"] = [*cap, "--help"]
    commands["captioner caption photo.jpg"] = [*cap, "caption", str(photo), *model]
    commands["captioner caption photo.jpg --runtime torch"] = [*cap, "caption", str(photo), *model, "--runtime", "torch"]
    if "lean" not in args.skip:
        commands["LeanCaptioner photo.jpg (no torch)"] = [sys.executable, "-c", LEAN, str(photo),
                                                                 args.model or ""]
    if args.items and "find" not in args.skip:
        gallery = work / f"gallery-{args.items}"
        print(f"gallery of {args.items:,} items in {gallery} ...", flush=True)
        build_gallery(gallery, args.items, args.model, work)
        commands[f'captioner find "..." ({args.items:,} items)'] = [*cap, "find", QUERY, "--gallery", str(gallery),
                                                                    *model]
        commands[f'captioner find "..." ({args.items:,} items) --runtime torch'] = [
            *cap, "find", QUERY, "--gallery", str(gallery), *model, "--runtime", "torch"]
    print(f"{len(commands)} commands, {args.runs} rounds (+1 warm-up); {os.cpu_count()} cores; "
          f"load average {load_text()}", flush=True)
    figures = {name: {"wall": [], "rss": []} for name in commands}
    studio = []
    report = work / "peak.txt"
    for round_no in range(args.runs + 1):
        for name, cmd in commands.items():
            rc, wall, rss = peak_rss(cmd, report, stderr=subprocess.DEVNULL)
            if rc != 0:
                raise SystemExit(f"{name} failed (exit {rc}): {' '.join(cmd)}")
            if round_no:
                figures[name]["wall"].append(wall)
                figures[name]["rss"].append(rss)
        if "studio" not in args.skip:
            seconds = studio_first_page(args.model, work / "studio-gallery", work / "studio.log")
            if round_no:
                studio.append(seconds)
        print(f"  round {round_no}/{args.runs} done (load {load_text()})", flush=True)
    torch_wall = statistics.median(figures['python -c "import torch"']["wall"]) if "torch" not in args.skip else None
    print(f"\n{'command':55s} {'median s':>9s} {'x torch':>8s} {'peak MB (median / max)':>24s}")
    out = {"load_average_end": load_text(), "runs": args.runs, "cores": os.cpu_count(), "commands": {}}
    for name, f in figures.items():
        wall, rss = statistics.median(f["wall"]), statistics.median(f["rss"])
        ratio = f"{wall / torch_wall:8.2f}" if torch_wall else " " * 8
        print(f"{name:55s} {wall:9.2f} {ratio} {rss:14.0f} / {max(f['rss']):.0f}")
        out["commands"][name] = {"median_s": wall, "peak_mb_median": rss, "peak_mb_max": max(f["rss"]),
                                 "wall_s": f["wall"]}
    if studio:
        wall = statistics.median(studio)
        ratio = f"{wall / torch_wall:8.2f}" if torch_wall else " " * 8
        print(f"{'studio: start to first page':55s} {wall:9.2f} {ratio}")
        out["studio_first_page_s"] = studio
    print(f"\nload average (1/5/15 min) at the end: {load_text()}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
