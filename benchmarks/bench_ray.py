"""Benchmark `captioner caption --ray` (a local Ray instance) against the plain `captioner caption`,
side by side in one run, on the same photos and settings.

    python -m benchmarks.bench_ray                               # 300 photos, Ray with 1 and 2 workers
    python -m benchmarks.bench_ray --images 1000 --small 50 --json bench_ray.json
    python -m benchmarks.bench_ray --workers 1 2 4 --rounds 2     # more workers, each run twice

Each command runs as a subprocess, as a user runs it (`python -m captioner caption PHOTOS --out ...`),
twice: on `--images` photos and on the first `--small` of them. Printed per command:

- end to end: wall seconds and photos/s for the whole command (Ray: start of the local instance,
  actors' model loads, the job and the shutdown included);
- marginal photos/s: (images - small) / (T(images) - T(small)), the throughput once running, with the
  fixed start-up cost of each command taken out the same way for both;
- CPU seconds per photo: user + system time of the command and every process under it (Ray's
  daemons and workers included; psutil, read every 0.2 s), over all its photos, start-up included;
- marginal CPU ms per photo ((CPU(images) - CPU(small)) / (images - small)) and the idle estimate
  it gives (cores x 1000 / that): what the command would do with the cores to itself, the figure that
  a busy machine distorts least;
- the ratio of each Ray figure to the plain command's (target: >= 0.8x), and whether the best
  captions agree photo by photo.

The photos are Flickr8k photos (`../shared/data/flickr8k`) when present, else generated JPEGs.
Runs are interleaved (plain, ray 1, ray 2, ...) so that a busy machine slows all of them alike; on a
shared machine the figures are noisy and Ray, with more processes, takes a larger share of a
contended CPU: compare the ratios, and rerun on an idle machine for absolute figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.oracles.photos import real_photos, synthetic_photos  # the photo generators

from benchmarks._stats import load_average

ROOT = Path(__file__).resolve().parents[1]


def run_command(args: list[str]) -> dict:
    """Run `python -m captioner ARGS`: wall seconds, and CPU seconds of the command and every process
    under it (Ray's daemons and workers included), read from psutil every 0.2 s while it runs."""
    import psutil

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "captioner", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    cpu: dict[tuple[int, float], float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                t = p.cpu_times()
                cpu[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                pass
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    reader.join(10)
    if proc.returncode not in (0, 1):
        err = b"".join(err_chunks).decode("utf-8", "replace")
        raise SystemExit(f"captioner {' '.join(args[-8:])} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": sum(cpu.values())}


def best_captions(out: Path) -> dict[str, str]:
    if out.is_dir():
        from captioner.scale.results_store import read_results

        rows = read_results(str(out))
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["image"]: r["candidates"][0]["caption"] for r in rows if not r.get("error") and r["candidates"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--small", type=int, default=40, help="the short run that measures start-up (default 40)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray captioning workers to try")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--shard-size", type=int, default=32, help="--ray-shard-size (default 32)")
    ap.add_argument("--rounds", type=int, default=1, help="run every command this many times (best kept)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    photos = [str(p) for p in real_photos(args.images)]
    if len(photos) < args.images:
        photos = [str(p) for p in synthetic_photos(args.images, tmp / "photos")]
    import ray

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python "
          f"{platform.python_version()}, ray {ray.__version__}; load average {load_average()[0]:.1f} at start")
    print(f"photos: {len(photos)} ({'Flickr8k' if 'flickr8k' in photos[0] else 'generated'}), small run "
          f"{args.small}; beam: the model's; batch {args.batch_size}; Ray shard size {args.shard_size}")
    commands = {"plain": lambda out: ["--out", str(out / "captions.jsonl")]}
    for w in args.workers:
        commands[f"ray {w} worker{'s' if w > 1 else ''}"] = (
            lambda out, w=w: ["--ray", "--out", str(out / "ray"), "--ray-workers", str(w),
                              "--ray-shard-size", str(args.shard_size)])
    results: dict[str, dict] = {name: {} for name in commands}
    outputs: dict[str, Path] = {}
    for _ in range(args.rounds):
        for size in (args.small, len(photos)):
            for name, extra in commands.items():
                out = tmp / f"{name.replace(' ', '_')}-{size}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                r = run_command(["caption", *photos[:size], "--batch-size", str(args.batch_size), *extra(out)])
                print(f"  {name:<16} {size:>5} photos: {r['wall_s']:7.1f} s wall, {r['cpu_s']:7.1f} s CPU "
                      f"(load average {load_average()[0]:.1f})", flush=True)
                best = results[name].get(size)
                if best is None or r["wall_s"] < best["wall_s"]:
                    results[name][size] = r
                if size == len(photos):
                    outputs[name] = out / ("captions.jsonl" if name == "plain" else "ray")

    n, small = len(photos), args.small
    plain_caps = best_captions(outputs["plain"])
    table = {}
    for name, r in results.items():
        big, little = r[n], r[small]
        table[name] = {
            "end_to_end_s": big["wall_s"], "end_to_end_ips": n / big["wall_s"],
            "marginal_ips": (n - small) / max(1e-9, big["wall_s"] - little["wall_s"]),
            "startup_s": little["wall_s"] - small * (big["wall_s"] - little["wall_s"]) / max(1, n - small),
            "cpu_ms_per_photo": 1000 * big["cpu_s"] / n,
            "marginal_cpu_ms_per_photo": 1000 * (big["cpu_s"] - little["cpu_s"]) / max(1, n - small),
        }
        # what the machine would do with its cores to itself: each photo costs its marginal CPU time
        table[name]["idle_estimate_ips"] = (os.cpu_count() or 1) * 1000 / max(1e-9, table[name][
            "marginal_cpu_ms_per_photo"])
        caps = best_captions(outputs[name])
        table[name]["same_best_caption"] = f"{sum(caps.get(k) == v for k, v in plain_caps.items())}/{len(plain_caps)}"
    base = table["plain"]
    print(f"\n| command | end to end ({n} photos) | marginal photos/s | start-up | CPU ms / photo (all / "
          "marginal) | idle estimate | vs plain: marginal / end to end / CPU | same best caption |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, t in table.items():
        t["ratio_marginal"] = t["marginal_ips"] / base["marginal_ips"]
        t["ratio_end_to_end"] = t["end_to_end_ips"] / base["end_to_end_ips"]
        t["ratio_cpu"] = base["marginal_cpu_ms_per_photo"] / t["marginal_cpu_ms_per_photo"]
        print(f"| {name} | {t['end_to_end_s']:.1f} s ({t['end_to_end_ips']:.1f}/s) | {t['marginal_ips']:.1f} | "
              f"{t['startup_s']:.1f} s | {t['cpu_ms_per_photo']:.0f} / {t['marginal_cpu_ms_per_photo']:.0f} | "
              f"{t['idle_estimate_ips']:.1f}/s | {t['ratio_marginal']:.2f}x / {t['ratio_end_to_end']:.2f}x / "
              f"{t['ratio_cpu']:.2f}x | {t['same_best_caption']} |")
    print("(idle estimate: cores x 1000 / marginal CPU ms per photo, the photos/s of a machine whose cores all go "
          "to the command; CPU ratio: the plain command's marginal CPU per photo / this one's)")
    rays = {k: t for k, t in table.items() if k != "plain"}
    best_ray = max((t["ratio_marginal"] for t in rays.values()), default=0.0)
    best_cpu = max((t["ratio_cpu"] for t in rays.values()), default=0.0)
    print(f"\ntarget: Ray's throughput >= 0.80x the plain command's: marginal wall-clock best {best_ray:.2f}x "
          f"({'met' if best_ray >= 0.8 else 'NOT met'}), CPU per photo best {best_cpu:.2f}x "
          f"({'met' if best_cpu >= 0.8 else 'NOT met'}); load average {load_average()[0]:.1f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps({"photos": n, "small": small, "batch_size": args.batch_size,
                                               "shard_size": args.shard_size, "table": table}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
