"""Fault cases of the `captioner caption` command (issue: security holes and data-loss paths).

Each test reproduces a fault found by a fault-injection run against 0.1.0: a resumed output file
after a cut-off last line, a full disk, invalid numbers, odd paths. Studio and gallery cases live
in test_studio_security.py, test_studio_memory.py, test_gallery_cli.py; ONNX ones in test_onnx_cache.py
and test_no_network.py.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from captioner import cli
from captioner import results_file as results_file_module


@pytest.fixture(scope="module")
def album(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("album")
    for i in range(6):
        Image.new("RGB", (60 + 10 * i, 40), (40 * i, 200 - 30 * i, 90)).save(d / f"p{i}.jpg")
    return d


def caption(args, capsys) -> tuple[int, str, str]:
    code = cli.main(["caption", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- 5. resume after a cut-off last line
def test_resume_drops_a_cut_off_jsonl_line_and_captions_that_photo(album, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert caption([album, "--out", out, "--model", tiny_model_dir, "--batch-size", "2"], capsys)[0] == 0
    full = out.read_text().splitlines(keepends=True)
    out.write_text("".join(full[:3]) + full[3][: len(full[3]) // 2])  # power cut in the middle of line 4
    code, _, err = caption([album, "--out", out, "--model", tiny_model_dir], capsys)
    assert code == 0 and "incomplete last line" in err
    recs = jsonl(out)  # every line valid JSON
    assert sorted(r["image"] for r in recs) == sorted(str(p) for p in album.glob("*.jpg"))  # no loss, no duplicate


def test_resume_does_not_count_a_cut_off_csv_row_as_done(album, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "c.csv"
    assert caption([album, "--out", out, "--model", tiny_model_dir], capsys)[0] == 0
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    cut = lines[-1][: lines[-1].index(",") + 5]  # image name and a few letters of the caption survive
    out.write_text("".join(lines[:-1]) + cut)
    assert caption([album, "--out", out, "--model", tiny_model_dir], capsys)[0] == 0
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted(r["image"] for r in rows) == sorted(str(p) for p in album.glob("*.jpg"))
    assert all(r["caption"] and not r["error"] for r in rows)


def test_an_empty_record_without_error_is_not_done(album, tiny_model_dir, tmp_path, capsys):
    """0.1.0 wrote records with no candidates and no error for --max-len -5; they must not block a photo."""
    out = tmp_path / "c.jsonl"
    first = sorted(album.glob("*.jpg"))[0]
    out.write_text(json.dumps({"image": str(first), "candidates": [], "error": None}) + "\n")
    assert caption([first, "--out", out, "--model", tiny_model_dir], capsys)[0] == 0
    assert jsonl(out)[-1]["candidates"]


def test_a_full_disk_ends_with_one_line_and_the_file_resumes_cleanly(album, tiny_model_dir, tmp_path, capsys,
                                                                      monkeypatch):
    out = tmp_path / "c.jsonl"
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync_then_full(fd):
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch does not fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(results_file_module.os, "fsync", fsync_then_full)
    code, _, err = caption([album, "--out", out, "--model", tiny_model_dir, "--batch-size", "2"], capsys)
    assert code == 2 and "disk is full" in one_line_error(err)
    assert len(jsonl(out)) == 2  # the first batch, complete; the failed batch rolled back
    monkeypatch.setattr(results_file_module.os, "fsync", real_fsync)
    assert caption([album, "--out", out, "--model", tiny_model_dir], capsys)[0] == 0
    assert sorted(r["image"] for r in jsonl(out)) == sorted(str(p) for p in album.glob("*.jpg"))


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_a_really_full_disk(album, tiny_model_dir, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (disk / "filler").write_bytes(b"x" * 8192)  # two 4 KB pages left for the output
        out = disk / "c.jsonl"
        cmd = [sys.executable, "-m", "captioner", "caption", str(album), "--out", str(out), "--model",
               str(tiny_model_dir), "--batch-size", "1", "--beam-size", "20"]  # 4-5 KB a record
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert "disk is full" in [line for line in p.stderr.splitlines() if line.startswith("error:")][0]
        recs = jsonl(out)  # only complete, valid lines
        assert 0 < len(recs) < 6
        shutil.move(out, tmp_path / "c.jsonl")  # room again: resume elsewhere with the same file
        cmd[cmd.index(str(out))] = str(tmp_path / "c.jsonl")
        assert subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode == 0
        assert sorted(r["image"] for r in jsonl(tmp_path / "c.jsonl")) == sorted(str(p) for p in album.glob("*.jpg"))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# ---------------------------------------------------------------- 6 and 7. invalid numbers, refused before writing
@pytest.mark.parametrize("flags, says", [
    (["--max-len", "-5"], "--max-len"), (["--max-len", "0"], "--max-len"), (["--max-len", "101"], "--max-len"),
    (["--beam-size", "0"], "--beam-size"), (["--beam-size", "-3"], "--beam-size"), (["--beam-size", "1000"], "--beam-size"),
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-4"], "--batch-size"),
    (["--threads", "256"], "--threads"), (["--threads", "100000"], "--threads"), (["--threads", "-1"], "--threads"),
    (["--device", "foo"], "device"), (["--length-penalty", "nan"], "--length-penalty"),
])
def test_bad_numbers_are_refused_before_anything_is_written(album, tiny_model_dir, tmp_path, capsys, flags, says):
    out = tmp_path / "c.jsonl"
    code, _, err = caption([album, "--out", out, "--model", tiny_model_dir, *flags], capsys)
    assert code == 2 and says in one_line_error(err)
    assert not out.exists()


def test_cuda_without_a_gpu_is_refused(album, tiny_model_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = caption([album, "--model", tiny_model_dir, "--device", "cuda"], capsys)
    assert code == 2 and "GPU" in one_line_error(err)


@pytest.mark.parametrize("target", ["folder", "/dev/full", "unwritable", "under-a-file"])
def test_bad_output_targets_are_refused(album, tiny_model_dir, tmp_path, capsys, target):
    if target == "folder":
        out = tmp_path
    elif target == "unwritable":
        if os.geteuid() == 0:
            pytest.skip("root can write anywhere")
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        out = ro / "c.jsonl"
    elif target == "under-a-file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "c.jsonl"
    else:
        if not Path(target).exists():
            pytest.skip(f"no {target}")
        out = Path(target)
    code, _, err = caption([album, "--out", out, "--model", tiny_model_dir], capsys)
    assert code == 2
    one_line_error(err)


def test_out_dash_writes_json_lines_to_standard_output(album, tiny_model_dir, capsys):
    code, out, _ = caption([album, "--out", "-", "--model", tiny_model_dir], capsys)
    assert code == 0 and len([json.loads(line) for line in out.splitlines()]) == 6
    assert not Path("-").exists()


# ---------------------------------------------------------------- 9. odd paths get their true reason
def test_symlink_loops_fifos_and_broken_links_say_what_they_are(tiny_model_dir, tmp_path, capsys):
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    broken = tmp_path / "broken.jpg"
    broken.symlink_to(tmp_path / "gone.jpg")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    good = tmp_path / "good.jpg"
    Image.new("RGB", (50, 50), "red").save(good)
    code, out, err = caption([loop, broken, fifo, good, "--json", "--model", tiny_model_dir], capsys)
    assert code == 1  # the good photo is still captioned
    recs = {Path(r["image"]).name: r for r in map(json.loads, out.splitlines())}
    assert "symbolic link loop" in recs["loop.jpg"]["error"]
    assert "broken symbolic link" in recs["broken.jpg"]["error"]
    assert "not a regular file" in recs["pipe.jpg"]["error"] and "FIFO" in recs["pipe.jpg"]["error"]
    assert recs["good.jpg"]["error"] is None


# ---------------------------------------------------------------- 7. galleries: read-only, absurd pages
def test_a_read_only_gallery_is_browsed_and_refuses_changes(tmp_path):
    from captioner.storage import Gallery, GalleryError

    folder = tmp_path / "g"
    photo = tmp_path / "p.png"
    Image.new("RGB", (30, 30), "red").save(photo)
    with Gallery(folder) as g:
        item = g.save(photo, "p.png", "a red square on the table")
    images = sorted(p.relative_to(folder) for p in (folder / "images").rglob("*"))
    with Gallery(folder, read_only=True) as ro:
        assert ro.read_only and ro.get(item)["caption"] == "a red square on the table"
        assert [i["id"] for i in ro.search("square").items] == [item]
        for change in (lambda: ro.save(photo, "p.png", "x"), lambda: ro.delete(item),
                       lambda: ro.update_caption(item, "x")):
            with pytest.raises(GalleryError, match="read-only"):
                change()
    assert sorted(p.relative_to(folder) for p in (folder / "images").rglob("*")) == images
    with Gallery(folder) as g:
        assert g.count() == 1 and g.get(item)["caption"] == "a red square on the table"


def test_an_absurd_page_number_is_an_empty_page(tmp_path):
    from captioner.storage import Gallery

    with Gallery(tmp_path / "g") as g:
        for page in (10**30, -5, "7"):
            assert g.search("dog", page=page).items == [] and g.browse(page=page).items == []


# ---------------------------------------------------------------- 9. a full disk during `gallery add`
@pytest.mark.parametrize("where", ["database", "image file"])
def test_a_full_disk_during_gallery_add_is_one_line_exit_2_and_resumes(album, tiny_model_dir, tmp_path, capsys,
                                                                       monkeypatch, where):
    import sqlite3

    from captioner.storage.gallery import Gallery

    folder = tmp_path / "g"
    method = "_insert_row" if where == "database" else "_write_image"
    real = getattr(Gallery, method)
    calls = {"n": 0}

    def fills_up(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:  # the third photo does not fit
            if where == "database":
                raise sqlite3.OperationalError("database or disk is full")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Gallery, method, fills_up)
    argv = ["gallery", "add", str(album), "--gallery", str(folder), "--model", str(tiny_model_dir), "--quiet"]
    code = cli.main(argv)
    _, err = capsys.readouterr()
    line = one_line_error(err)
    assert code == 2 and "disk" in line and "full" in line and "run the same command again" in line, err
    assert len(err.splitlines()) == 1  # it stops at once rather than failing every photo left, line by line
    monkeypatch.undo()
    with Gallery(folder) as g:
        assert g.count() == 2 and g.orphan_images() == []  # no picture file without its row
    assert cli.main(argv) == 0
    out, _ = capsys.readouterr()
    assert "added 4 photo(s)" in out and "2 already there" in out
    with Gallery(folder) as g:
        assert g.count() == 6 and g.integrity_check() == "ok"


# ---------------------------------------------------------------- 10. --out suffixes, huge images, odd names, the bar
@pytest.mark.parametrize("name", ["x.txt", "x.json", "captions"])
def test_an_out_file_of_unknown_kind_is_refused(album, tiny_model_dir, tmp_path, capsys, name):
    out = tmp_path / name
    code, _, err = caption([album, "--out", out, "--model", tiny_model_dir], capsys)
    assert code == 2 and ".jsonl" in one_line_error(err) and ".csv" in err
    assert not out.exists()


def test_a_89_to_100_megapixel_image_gives_one_line_of_ours(tiny_model_dir, tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("L", (9500, 9500), 128).save(big, quality=20)  # 90 MP: over Pillow's bomb warning, under our 100 MP
    p = subprocess.run([sys.executable, "-m", "captioner", "caption", str(big), "--model", str(tiny_model_dir)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "DecompressionBombWarning" not in p.stderr and "Image.open" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if "a very large image" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "big.jpg" in lines[0], p.stderr
    assert "(9500x9500, 90 megapixels" in lines[0]
    assert all(line.startswith("warning: ") for line in p.stderr.splitlines())  # (the other: a blank image)


def test_the_gallery_reads_a_big_image_without_pillows_warning(tmp_path):
    import warnings

    from captioner.storage.gallery import Gallery

    big = tmp_path / "big.png"
    Image.new("1", (9500, 9500)).save(big)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Gallery(tmp_path / "g") as g:
            g.save(big, "big.png", "a big grey square")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_newline_in_a_file_name_cannot_forge_a_line(tiny_model_dir, tmp_path, capsys):
    forged = tmp_path / "bad\nwarning: forged.jpg"
    forged.write_bytes(b"not an image")
    tiny = tmp_path / "tiny\nerror: forged.png"
    Image.new("RGB", (8, 8), "red").save(tiny, format="PNG")
    good = tmp_path / "good.jpg"
    Image.new("RGB", (60, 40), "blue").save(good)
    code, out, err = caption([forged, tiny, good, "--model", tiny_model_dir], capsys)
    assert code == 1
    for line in err.splitlines():
        assert not line.startswith(("warning: forged", "error: forged")), err
    assert [line for line in err.splitlines() if "forged.jpg" in line][0].startswith("error: ")
    assert "'" + str(tiny).replace("\n", "\\n") + "'" in err  # quoted, its newline escaped
    assert len(out.splitlines()) == 2  # the tiny photo's line and the good one's, one line each


def test_error_lines_are_printed_above_the_progress_bar(album, tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    shutil.copytree(album, folder)
    (folder / "p2.jpg").write_bytes(b"broken")
    code, _, err = caption([folder, "--out", tmp_path / "c.jsonl", "--model", tiny_model_dir, "--batch-size", "1"],
                           capsys)
    assert code == 1 and "captioning" in err
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]  # what a terminal shows on each line
    errors = [line for line in shown if "p2.jpg" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), err


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_gallery_add_on_a_really_full_disk(tiny_model_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(20):
        Image.new("RGB", (64 + i, 48), (12 * i, 90, 200 - 9 * i)).save(photos / f"p{i:02d}.jpg")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        cmd = [sys.executable, "-m", "captioner", "gallery", "add", str(photos), "--gallery", str(disk / "g"),
               "--model", str(tiny_model_dir), "--quiet"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # each item ~70 KB with its features
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert [line for line in p.stderr.splitlines()] == [one_line_error(p.stderr)]
        assert "is full" in p.stderr and "run the same command again" in p.stderr
        check = subprocess.run([sys.executable, "-m", "captioner", "gallery", "check", "--gallery", str(disk / "g")],
                               capture_output=True, text=True, timeout=300)
        assert check.returncode == 0 and "all is well" in check.stdout, check.stdout + check.stderr  # no orphan
        shutil.copytree(disk / "g", tmp_path / "g")  # room again: resume the same gallery elsewhere
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    cmd[cmd.index(str(disk / "g"))] = str(tmp_path / "g")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "added" in again.stdout and "already there" in again.stdout, again.stderr
    from captioner.storage.gallery import Gallery

    with Gallery(tmp_path / "g") as g:
        assert g.count() == 20 and g.integrity_check() == "ok" and g.orphan_images() == []
