"""Video captioning (issue 14): shots, timed captions, subtitles, bad files.

Every video is made here with PyAV from PIL drawings (no video file is committed). Where a segment's
caption must equal its photo's, the clip is lossless H.264 (libx264rgb, crf 0): the tiny test model is
random, so the faint colour changes of lossy YUV coding can change its captions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from captioner.cli import main
from captioner.pipeline import Captioner
from captioner.video import Segment, VideoResult, is_video_path
from captioner.video.decode import rotation_of, upright
from captioner.video.segments import merge, plan
from captioner.video.shots import cut_times, detect_shots
from captioner.video.subtitles import render, timestamp, write_subtitles

W, H, FPS = 640, 480, 25
CUTS = [3.0, 6.0, 9.0]


def photos(w: int = W, h: int = H) -> list[Image.Image]:
    """Four clearly different pictures: colour, shape and brightness all change at each cut."""
    specs = [((200, 30, 30), "ellipse", (250, 250, 80)), ((20, 40, 190), "rectangle", (240, 240, 240)),
             ((30, 160, 50), "triangle", (90, 20, 120)), ((240, 200, 40), "stripes", (20, 20, 20))]
    out = []
    for bg, shape, fg in specs:
        img = Image.new("RGB", (w, h), bg)
        d = ImageDraw.Draw(img)
        if shape == "ellipse":
            d.ellipse((w * 0.25, h * 0.2, w * 0.75, h * 0.8), fill=fg)
        elif shape == "rectangle":
            d.rectangle((w * 0.1, h * 0.3, w * 0.6, h * 0.9), fill=fg)
        elif shape == "triangle":
            d.polygon([(w * 0.5, h * 0.1), (w * 0.9, h * 0.9), (w * 0.1, h * 0.9)], fill=fg)
        else:
            for x in range(0, w, w // 8):
                d.rectangle((x, 0, x + w // 16, h), fill=fg)
        out.append(img)
    return out


def write_video(path: Path, frames, *, times=None, codec: str = "libx264rgb", rotation: int | None = None,
                fps: int = FPS, gop: int | None = None) -> Path:
    """`frames` (PIL images) into `path`; `times` (seconds) gives each frame its own timestamp (VFR)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames[0].size
        if codec == "libx264rgb":
            s.pix_fmt, s.options = "rgb24", {"crf": "0", "preset": "ultrafast"}
        else:
            s.pix_fmt = "yuv420p"
            if codec == "libx264":
                s.options = {"crf": "18", "preset": "ultrafast"}
        if gop:
            s.options = {**s.options, "g": str(gop), "keyint_min": str(gop)}
        tb = Fraction(1, 1000)
        if times is not None:
            s.codec_context.time_base = tb
        if rotation is not None:
            s.set_display_rotation(rotation)
        for n, img in enumerate(frames):
            f = av.VideoFrame.from_image(img)
            if times is not None:
                f.pts, f.time_base = round(times[n] / tb), tb
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def pics():
    return photos()


@pytest.fixture(scope="module")
def clip(tmp_path_factory, pics) -> Path:
    """Four photos, 3 s each at 25 fps, 640x480, lossless H.264."""
    return write_video(tmp_path_factory.mktemp("video") / "four.mp4", [p for p in pics for _ in range(3 * FPS)])


@pytest.fixture(scope="module")
def captioner(tiny_model_dir):
    return Captioner.load(tiny_model_dir)


def expected_segments(captions: list[str], bounds: list[float]):
    """(start, end, caption) after merging equal neighbours."""
    return [(s.start, s.end, s.caption) for s in merge([_seg(a, b, c) for a, b, c in zip(bounds, bounds[1:], captions)])]


def _seg(a, b, caption):
    from captioner.decoding.candidate import Candidate

    return Segment(a, b, [Candidate(caption.split(), [], 0.0, None)])


def test_cuts_and_captions_match_the_photos(clip, pics, captioner):
    result = captioner.caption_video(clip)
    assert result.error is None
    assert len(result.cuts) == 3 and all(abs(a - b) <= 0.2 for a, b in zip(result.cuts, CUTS))
    alone = [captioner.caption(p).caption for p in pics]
    got = [(round(s.start, 1), round(s.end, 1), s.caption) for s in result.segments]
    assert got == expected_segments(alone, [0.0, *CUTS, 12.0])
    assert result.duration == pytest.approx(12.0, abs=0.05)


def test_long_shots_are_split_and_equal_captions_merged():
    times = [n / 25 for n in range(25 * 25)]  # one 25 s shot
    sharp = [0.0] * len(times)
    sharp[61] = 9.0  # among the 5 frames nearest the middle (2.5 s) of the first 5 s part, not the nearest
    sharp[10] = 99.0  # sharper, but far from the middle
    parts = plan(times, sharp, [], 25.0, 10.0)
    assert [(round(p.start, 3), round(p.end, 3)) for p in parts] == \
        [(0, round(25 / 3, 3)), (round(25 / 3, 3), round(50 / 3, 3)), (round(50 / 3, 3), 25)]
    parts = plan(times, sharp, [], 25.0, 5.0)
    assert len(parts) == 5 and parts[0].frame == 61 and parts[1].frame in range(185, 190)
    short = plan(times, sharp, [250], 25.0, 10.0)  # a cut at 10 s: two shots of 10 and 15 s
    assert [round(p.start, 2) for p in short] == [0.0, 10.0, 17.5]
    merged = merge([_seg(0, 1, "a dog"), _seg(1, 2, "a dog"), _seg(2, 3, "a cat"), _seg(3, 4, "a dog")])
    assert [(s.start, s.end, s.caption) for s in merged] == [(0, 2, "a dog"), (2, 3, "a cat"), (3, 4, "a dog")]


def test_max_shot_splits_in_caption_video(clip, captioner):
    result = captioner.caption_video(clip, max_shot=1.0)
    assert result.error is None
    alone = [captioner.caption(p).caption for p in photos()]
    bounds = sorted({round(x, 6) for x in [0.0, *CUTS, 12.0]} | {i * 1.0 for i in range(13)})
    caps = [alone[min(3, int(a // 3))] for a in bounds[:-1]]
    assert [(round(s.start, 1), round(s.end, 1), s.caption) for s in result.segments] == expected_segments(caps, bounds)


def test_slow_fade_gives_no_false_cut(tmp_path, pics):
    # red to blue: the hue of the red background wraps from 0 to 179 as the fade begins (scored as a cut
    # by PySceneDetect's own hue difference; shots.py measures it around the colour circle)
    a, b = pics[0], pics[1]
    fade = [Image.blend(a, b, k / 50) for k in range(1, 50)]  # 2 s
    path = write_video(tmp_path / "fade.mp4", [a] * 50 + fade + [b] * 50, codec="libx264")
    assert detect_shots(path).cuts == []


def test_variable_frame_rate_uses_timestamps(tmp_path, pics):
    steps = [0.02, 0.06, 0.03, 0.05]  # a different frame rate in each shot: index / fps would be wrong
    frames, times, bounds = [], [], [0.0, *CUTS, 12.0]
    for k, (pic, step) in enumerate(zip(pics, steps)):
        t = bounds[k]
        while t < bounds[k + 1] - 1e-9:
            frames.append(pic)
            times.append(t)
            t = round(t + step, 3)
    path = write_video(tmp_path / "vfr.mp4", frames, times=times, codec="libx264")
    scanned = detect_shots(path)
    assert len(scanned.cuts) == 3
    assert all(abs(a - b) <= 0.1 for a, b in zip(cut_times(scanned), CUTS)), cut_times(scanned)
    assert scanned.end == pytest.approx(12.0, abs=0.1)


def test_rotated_phone_video_is_turned_upright(tmp_path, pics, captioner):
    stored = pics[0].rotate(-90, expand=True)  # the camera stored it sideways, the display matrix turns it back
    path = write_video(tmp_path / "rot.mp4", [stored] * 25, rotation=90)
    result = captioner.caption_video(path)
    assert result.error is None
    assert [s.caption for s in result.segments] == [captioner.caption(pics[0]).caption]
    from captioner.video.decode import grab

    scanned = detect_shots(path)
    assert scanned.rotation == 90
    frame = grab(path, [12], scanned)[12]
    assert frame.size == (W, H) and np.array_equal(np.asarray(frame), np.asarray(pics[0]))


@pytest.mark.parametrize("vfr", [False, True])
def test_seeking_returns_exactly_the_frames_asked_for(tmp_path, vfr):
    frames = []
    for i in range(100):  # every frame different: a bar moves across
        img = Image.new("RGB", (160, 120), (40, 80, 120))
        ImageDraw.Draw(img).rectangle((i, 10, i + 8, 110), fill=(250, 250, 250))
        frames.append(img)
    times = [round(0.04 * i + (0.015 if i % 3 == 1 else 0.0), 3) for i in range(100)] if vfr else None
    path = write_video(tmp_path / "bar.mp4", frames, times=times, gop=10)
    from captioner.video.decode import grab, scan

    scanned = scan(path)
    assert len(scanned.times) == 100
    if vfr:
        assert scanned.times == pytest.approx(times, abs=1e-6)
    wanted = [90, 5, 37, 38, 12, 99, 0]
    got = grab(path, wanted, scanned)
    assert sorted(got) == sorted(wanted)
    for i in wanted:
        assert np.array_equal(np.asarray(got[i]), np.asarray(frames[i])), i


def test_rotation_helper():
    img = Image.new("RGB", (4, 2))
    img.putpixel((0, 0), (255, 0, 0))
    assert upright(img, 0) is img
    assert upright(img, 90).size == (2, 4) and upright(img, 90).getpixel((0, 3)) == (255, 0, 0)  # counter-clockwise
    assert upright(img, 270).getpixel((1, 0)) == (255, 0, 0)
    assert upright(img, 180).getpixel((3, 1)) == (255, 0, 0)

    class Stream:
        metadata = {"rotate": "90"}  # the legacy tag counts clockwise

    assert rotation_of(None, Stream()) == 270


def test_animated_gif(tmp_path, pics, captioner):
    small = [p.resize((160, 120)) for p in pics[:2]]
    path = tmp_path / "anim.gif"
    frames = [small[0]] * 10 + [small[1]] * 10
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    still = tmp_path / "still.gif"
    small[0].save(still)
    assert is_video_path(path) and not is_video_path(still) and is_video_path("x.MOV")
    result = captioner.caption_video(path)
    assert result.error is None and result.cuts == [pytest.approx(1.0, abs=0.2)]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, clip) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    data = clip.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    mkv = write_video(d / "whole.mkv", [p.resize((160, 120)) for p in photos() for _ in range(50)], codec="libx264")
    data = mkv.read_bytes()
    (d / "truncated.mkv").write_bytes(data[: len(data) // 2])
    mkv.unlink()
    corrupt = bytearray(clip.read_bytes())
    rng = np.random.default_rng(0)
    corrupt[:4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (d / "corrupt.mp4").write_bytes(bytes(corrupt))
    corrupt = bytearray(clip.read_bytes())  # the header intact, garbage in the middle of the frames
    for off in range(len(corrupt) // 3, 2 * len(corrupt) // 3, 2000):
        corrupt[off : off + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    (d / "corrupt_middle.mp4").write_bytes(bytes(corrupt))
    with av.open(str(d / "audio.mp4"), "w") as c:
        s = c.add_stream("aac", rate=44100)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 44100, i * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    for ext in ("mp4", "mkv"):
        with av.open(str(d / f"noframes.{ext}"), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
            c.start_encoding()
    (d / "text.mp4").write_text("not a video\n" * 100)
    photos()[0].save(d / "photo.mp4", format="JPEG")
    (d / "empty.mp4").write_bytes(b"")
    return {p.name: p for p in d.iterdir()}


def test_bad_inputs_give_one_line_errors(bad_files, captioner):
    for name, path in sorted(bad_files.items()):
        result = captioner.caption_video(path)
        assert isinstance(result, VideoResult) and result.segments == []
        assert result.error and str(path) in result.error and "\n" not in result.error, (name, result.error)
    assert "audio-only" in captioner.caption_video(bad_files["audio.mp4"]).error
    assert "truncated" in captioner.caption_video(bad_files["truncated.mkv"]).error
    assert "still picture" in captioner.caption_video(bad_files["photo.mp4"]).error
    assert "corrupt" in captioner.caption_video(bad_files["corrupt_middle.mp4"]).error


def test_subtitle_files_parse_back(tmp_path):
    import srt
    import webvtt

    segs = [_seg(0.0, 3.2, "a dog runs"), _seg(3.2, 7.9, "a cat, sits")]
    write_subtitles(tmp_path / "x.vtt", segs)
    write_subtitles(tmp_path / "x.srt", segs)
    vtt = webvtt.read(str(tmp_path / "x.vtt"))
    assert [(c.start, c.end, c.text) for c in vtt] == [("00:00:00.000", "00:00:03.200", "a dog runs"),
                                                      ("00:00:03.200", "00:00:07.900", "a cat, sits")]
    subs = list(srt.parse((tmp_path / "x.srt").read_text()))
    assert [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subs] == \
        [(0.0, 3.2, "a dog runs"), (3.2, 7.9, "a cat, sits")]
    assert timestamp(3723.4567) == "01:02:03.457" and "-->" in render(segs, "srt")
    assert sorted(os.listdir(tmp_path)) == ["x.srt", "x.vtt"]  # no temporary files left


def test_cli_text_json_and_subtitles(clip, pics, captioner, tiny_model_dir, tmp_path, capsys):
    alone = [captioner.caption(p).caption for p in pics]
    want = expected_segments(alone, [0.0, *CUTS, 12.0])
    model = ["--model", str(tiny_model_dir)]
    assert main(["caption", str(clip), *model]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{timestamp(a)} --> {timestamp(b)}  {c}" for a, b, c in want]

    assert main(["caption", str(clip), "--json", *model]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [set(r) for r in recs] == [{"video", "start", "end", "caption", "candidates", "error", "segment",
                                       "segments", "tags", "confidence", "warnings"}] * len(want)
    assert [(r["segment"], r["segments"]) for r in recs] == [(i, len(want)) for i in range(len(want))]
    assert [(r["start"], r["end"], r["caption"]) for r in recs] == [(round(a, 3), round(b, 3), c) for a, b, c in want]
    assert all(isinstance(r["start"], float) and r["video"] == str(clip) and r["error"] is None for r in recs)

    import srt
    import webvtt

    assert main(["caption", str(clip), "--out", str(tmp_path / "c.vtt"), *model]) == 0
    assert [c.text for c in webvtt.read(str(tmp_path / "c.vtt"))] == [c for _, _, c in want]
    assert main(["caption", str(clip), "--out", str(tmp_path / "c.srt"), *model]) == 0
    subs = list(srt.parse((tmp_path / "c.srt").read_text()))
    assert [(round(s.start.total_seconds(), 1), s.content) for s in subs] == [(a, c) for a, _, c in want]


def test_cli_mixed_folder_bad_video_and_jsonl(clip, bad_files, pics, tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    pics[1].save(folder / "a.jpg")
    os.symlink(clip, folder / "b.mp4")
    os.symlink(bad_files["text.mp4"], folder / "c.mp4")
    model = ["--model", str(tiny_model_dir)]
    assert main(["caption", str(folder), *model]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"{folder / 'a.jpg'}\t")
    assert all(x.startswith(f"{folder / 'b.mp4'}\t00:00:") for x in lines[1:]) and len(lines) > 1
    assert f"error: {folder / 'c.mp4'}: not a readable video file" in err and "1 of 2 video(s)" in err

    out_file = tmp_path / "caps.jsonl"
    assert main(["caption", str(folder), "--out", str(out_file), *model]) == 1
    recs = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert recs[0]["image"] == str(folder / "a.jpg")
    assert {r["video"] for r in recs[1:]} == {str(folder / "b.mp4"), str(folder / "c.mp4")}
    capsys.readouterr()
    assert main(["caption", str(folder), "--out", str(out_file), *model]) == 1  # resumes: only the bad one again
    assert "skipping 2 file(s)" in capsys.readouterr().err

    # a power cut after some of the video's segment records: that video is captioned again, once
    lines = out_file.read_text().splitlines(keepends=True)
    last_b = max(i for i, x in enumerate(lines) if json.loads(x).get("video") == str(folder / "b.mp4"))
    out_file.write_text("".join(lines[:last_b]) + lines[last_b][:20])
    capsys.readouterr()
    assert main(["caption", str(folder), "--out", str(out_file), *model]) == 1
    assert "skipping 1 file(s)" in capsys.readouterr().err
    recs = [json.loads(x) for x in out_file.read_text().splitlines()]
    b = [(r["segment"], r["segments"]) for r in recs if r.get("video") == str(folder / "b.mp4")]
    n = b[-1][1]
    assert b[-n:] == [(i, n) for i in range(n)]  # a complete set of segments after the cut-off ones

    # a bad single video: no subtitle file at all
    assert main(["caption", str(bad_files["truncated.mp4"]), "--out", str(tmp_path / "bad.vtt"), *model]) == 1
    assert not (tmp_path / "bad.vtt").exists() and not list(tmp_path.glob(".bad.vtt*"))
    assert main(["caption", str(clip), str(clip), "--out", str(tmp_path / "two.srt"), *model]) == 2
    assert main(["caption", str(clip), "--max-shot", "0", *model]) == 2


@pytest.mark.slow
def test_cli_subprocess_video(clip, tiny_model_dir):
    r = subprocess.run([sys.executable, "-m", "captioner", "caption", str(clip), "--model", str(tiny_model_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("00:00:00.000 --> 00:00:0"), r.stderr


@pytest.mark.slow
def test_8k_stream_is_captioned_like_its_small_copy(tmp_path, captioner):
    """An 8K (7680x4320) H.264 stream: detected and captioned from frames decoded at reduced size, with the
    cut where it is and each shot's caption equal to the caption of the same video at 640x360."""
    big = [p for p in photos(7680, 4320)[:2] for _ in range(10)]  # two shots of 2 s at 5 fps
    path = write_video(tmp_path / "eight_k.mp4", big, codec="libx264", fps=5)
    small = write_video(tmp_path / "small.mp4", [p.resize((640, 360)) for p in big], codec="libx264", fps=5)
    result = captioner.caption_video(path)
    assert result.error is None, result.error
    assert result.cuts == [pytest.approx(2.0, abs=0.2)]
    reference = captioner.caption_video(small)
    assert [s.caption for s in result.segments] == [s.caption for s in reference.segments]
    assert len(result.segments) == 2
