"""Benchmark video captioning: end-to-end speed as a multiple of real time and peak memory of
`captioner caption clip.mp4`, and seconds per minute of video at 480p, 1080p and 4K.

    python -m benchmarks.bench_video                         # the shipped model, default decoding
    python -m benchmarks.bench_video --json bench_video.json
    python -m benchmarks.bench_video --seconds 20 --k4-seconds 6   # quick check

The clips are generated (H.264, libx264 `veryfast`, crf 23, 25 fps, its default keyframe interval of
250 frames plus its scene-cut keyframes): `--shots` shots of equal length, each a different synthetic
picture (gradient, shapes, fine noise) panning slowly, so every frame differs and the encoder makes
real P/B frames. Targets: the 60 s 1080p clip at least 5x faster than real time end to end, under
1.5 GB peak.

1. end to end  `python -m captioner caption clip1080.mp4 --json` as a subprocess (start-up, model load
               and ONNX Runtime session included; the ONNX export cache is warmed first), wall time and
               peak RSS (through a small launcher: see bench_caption.py section 4).
2. per minute  `Captioner.caption_video` in this process on 480p, 1080p and 4K clips (4K shorter,
               `--k4-seconds`), split into the detection pass (decode + small frames + PySceneDetect),
               seeking to the frames to caption, and the rest (captioning); cuts found vs the true ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from benchmarks._stats import busy_warning, load_average, peak_rss

ROOT = Path(__file__).resolve().parents[1]
FPS = 25


def shot_picture(n: int, w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A picture 10% larger than the frame (room to pan): a two-colour gradient, a few shapes, fine noise."""
    W, H = int(w * 1.1), int(h * 1.1)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, W, dtype=np.float32)[None, :, None]
    base = (c1 * (1 - ramp) + c2 * ramp).repeat(H, axis=0)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, W - W // 4), rng.integers(0, H - H // 4)
        box = (int(x0), int(y0), int(x0 + rng.integers(W // 10, W // 4)), int(y0 + rng.integers(H // 10, H // 4)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if (n + _) % 2 else d.rectangle)(box, fill=colour)
    noise = rng.normal(0, 6, (H, W, 1)).astype(np.float32)
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(1)), dtype=np.float32) + noise
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def make_clip(path: Path, w: int, h: int, seconds: float, shots: int, seed: int = 0) -> tuple[Path, list[float]]:
    """An H.264 clip of `shots` equal shots, each panning over its own picture; returns the true cut times."""
    import av

    from captioner.atomic_write import atomic_path

    if path.exists():
        return path, [seconds * k / shots for k in range(1, shots)]
    rng = np.random.default_rng(seed)
    frames = round(seconds * FPS)
    per_shot = frames / shots
    with atomic_path(path, suffix=".part.mp4") as tmp, av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "23", "preset": "veryfast"}
        shot, pic, first = -1, None, 0
        for i in range(frames):
            k = int(i / per_shot)
            if k != shot:
                shot, pic, first = k, shot_picture(k, w, h, rng), i
            step = (i - first) / per_shot
            dx, dy = int((pic.width - w) * step), int((pic.height - h) * step / 2)
            frame = av.VideoFrame.from_image(pic.crop((dx, dy, dx + w, dy + h)))
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path, [seconds * k / shots for k in range(1, shots)]


def run_peak(cmd: list[str], tmp: Path) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (MB) of `cmd`."""
    return peak_rss(cmd, tmp / "peak.txt")


def cuts_found(found: list[float], true: list[float], tol: float = 0.2) -> int:
    return sum(any(abs(f - t) <= tol for f in found) for t in true)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the 480p and 1080p clips (default 60)")
    ap.add_argument("--k4-seconds", type=float, default=20.0, help="length of the 4K clip (default 20)")
    ap.add_argument("--shots", type=int, default=10, help="shots in the 60 s clips (scaled for the 4K one)")
    ap.add_argument("--clips", default=None, help="folder to keep the generated clips in (reused when present)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()

    from captioner.pipeline import Captioner
    from captioner.video.decode import grab
    from captioner.video.segments import plan
    from captioner.video.shots import cut_times, detect_shots

    tmp = Path(tempfile.mkdtemp(prefix="bench-video-"))
    clips = Path(args.clips) if args.clips else tmp
    clips.mkdir(parents=True, exist_ok=True)
    out: dict = {"machine": {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in load_average()],
                             "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}}
    print(f"load average {out['machine']['loadavg']} on {os.cpu_count()} CPUs  {busy_warning()}".rstrip())

    specs = {"480p": (854, 480, args.seconds, args.shots), "1080p": (1920, 1080, args.seconds, args.shots),
             "4K": (3840, 2160, args.k4_seconds, max(2, round(args.shots * args.k4_seconds / args.seconds)))}
    made = {}
    for label, (w, h, secs, shots) in specs.items():
        t = time.perf_counter()
        made[label] = make_clip(clips / f"clip{label}.mp4", w, h, secs, shots)
        print(f"clip {label}: {w}x{h}, {secs:g} s, {shots} shots ({time.perf_counter() - t:.1f} s to make)")

    # 1. end to end, as a user runs it
    model = ["--model", args.model] if args.model else []
    warm, _ = make_clip(clips / "warm.mp4", 320, 240, 2, 1)
    run_peak([sys.executable, "-m", "captioner", "caption", str(warm), *model], tmp)  # ONNX export cache
    clip, true = made["1080p"]
    rc, wall, peak = run_peak([sys.executable, "-m", "captioner", "caption", str(clip), "--json", *model], tmp)
    secs = specs["1080p"][2]
    out["end_to_end_1080p"] = {"seconds_of_video": secs, "wall_s": round(wall, 2), "x_real_time": round(secs / wall, 2),
                               "peak_rss_mb": round(peak), "exit_code": rc}
    print(f"end to end 1080p {secs:g} s clip: {wall:.1f} s wall = {secs / wall:.1f}x real time "
          f"(target >= 5x), peak RSS {peak:.0f} MB (target < 1536 MB), exit code {rc}")

    # 2. seconds per minute of video, in process
    cap = Captioner.load(args.model)
    cap.caption_video(warm)
    out["per_minute"] = {}
    for label, (clip, true) in made.items():
        secs = specs[label][2]
        t0 = time.perf_counter()
        scanned = detect_shots(clip)
        t1 = time.perf_counter()
        planned = plan(scanned.times, scanned.sharpness, scanned.cuts, scanned.end, 10.0)
        grab(clip, [p.frame for p in planned], scanned)
        t2 = time.perf_counter()
        result = cap.caption_video(clip)
        t3 = time.perf_counter()
        total = t3 - t2
        rec = {"seconds_of_video": secs, "total_s": round(total, 2), "s_per_min": round(total / secs * 60, 2),
               "x_real_time": round(secs / total, 2), "detect_s": round(t1 - t0, 2), "seek_grab_s": round(t2 - t1, 2),
               "caption_rest_s": round(max(0.0, total - (t2 - t0)), 2), "segments": len(result.segments),
               "cuts_true": len(true), "cuts_found_within_0.2s": cuts_found(cut_times(scanned), true),
               "cuts_detected": len(scanned.cuts), "error": result.error}
        out["per_minute"][label] = rec
        print(f"{label:>5}: {rec['s_per_min']:.1f} s per minute of video ({rec['x_real_time']:.1f}x real time; "
              f"detection pass {rec['detect_s']:.1f} s, seeking to {len(planned)} frames {rec['seek_grab_s']:.1f} s, "
              f"captioning {rec['caption_rest_s']:.1f} s, for {secs:g} s); cuts {rec['cuts_found_within_0.2s']}/"
              f"{len(true)} found, {len(scanned.cuts)} detected; {rec['segments']} segments")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
