"""`captioner gallery check|repair|search|export`, run as a user would (a subprocess)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from captioner.storage import Gallery, migrations
from test_gallery import add, make_image
from test_gallery_migrations import FIXTURE, damage_search_index, raw


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "captioner", "gallery", *args], capture_output=True,
                          text=True, encoding="utf-8", timeout=300, env=env)


@pytest.fixture
def folder(tmp_path) -> Path:
    """A gallery of three items: two dogs and a cat."""
    g = Gallery(tmp_path / "gallery")
    add(g, "a dog on the beach", 1, name="beach.png")
    add(g, "a cat on a sofa", 2, "a cat on a couch")
    add(g, "two dogs play\twith a\nball", 3, name="café.png")
    g.close()
    return g.folder


def test_check_and_repair(folder):
    ok = run("check", "--gallery", str(folder))
    assert ok.returncode == 0 and "3 items" in ok.stdout and "all is well" in ok.stdout, ok.stderr
    orphan = folder / "images" / "ab" / ("ab" + "0" * 62 + ".png")
    orphan.parent.mkdir()
    orphan.write_bytes(make_image(9))
    damage_search_index(folder, 1)
    Path(Gallery(folder).get(2)["image_path"]).unlink()
    bad = run("--gallery", str(folder), "check")  # --gallery before the action works too
    assert bad.returncode == 1, bad.stderr
    assert f"orphaned image file (no item uses it): {orphan}" in bad.stdout
    assert "search index: 1 item(s) missing" in bad.stdout and "missing image file: item 2" in bad.stdout
    assert "3 problem(s) found" in bad.stdout
    assert orphan.exists()  # check changes nothing
    fixed = run("repair", "--gallery", str(folder))
    assert "removed 1 orphaned image file(s); rebuilt the search index" in fixed.stdout
    assert fixed.returncode == 1 and fixed.stdout.count("still wrong") == 1  # it cannot bring a picture back
    assert "still wrong: missing image file: item 2" in fixed.stdout
    assert not orphan.exists()
    g = Gallery(folder)
    assert g.integrity_check() == "ok" and [i["id"] for i in g.search("beach").items] == [1]
    assert g.count() == 3


def test_search(folder):
    text = run("search", "dog", "--gallery", str(folder))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == ["1\ta dog on the beach\tbeach.png", "3\ttwo dogs play with a ball\tcafé.png"]
    lines = run("search", "dogs", "--json", "--limit", "1", "--gallery", str(folder))
    items = [json.loads(line) for line in lines.stdout.splitlines()]
    assert len(items) == 1 and items[0]["caption"] == "a dog on the beach"
    assert Path(items[0]["image_path"]).is_file() and "attention" not in items[0]["candidates"][0]
    assert "(1 of 2 shown; use --limit)" in lines.stderr
    everything = run("search", "", "--gallery", str(folder))
    assert [line.split("\t")[0] for line in everything.stdout.splitlines()] == ["3", "2", "1"]


def test_export(folder, tmp_path):
    items = list(Gallery(folder).iter_items())
    result = run("export", str(tmp_path / "out.json"), "--gallery", str(folder))
    assert result.returncode == 0 and "exported 3 items" in result.stdout
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == items
    run("export", str(tmp_path / "table.txt"), "--format", "csv", "--gallery", str(folder))
    with open(tmp_path / "table.txt", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["caption"] for row in rows] == [item["caption"] for item in items]
    assert all("attention" in c for c in items[0]["candidates"])  # JSON keeps them, CSV does not
    assert json.loads(rows[0]["candidates"]) == [{k: v for k, v in c.items() if k != "attention"}
                                                 for c in items[0]["candidates"]]


def test_default_gallery_folder_and_old_gallery(tmp_path):
    if sys.platform in ("win32", "darwin"):
        pytest.skip("XDG layout")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    missing = run("check", env=env)
    assert missing.returncode == 2 and "There is no gallery at" in missing.stderr
    folder = tmp_path / "data" / "captioner" / "gallery"
    shutil.copytree(FIXTURE, folder)  # a gallery written by release 0.1.0
    result = run("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"5 items, schema version {migrations.LATEST}" in result.stdout


def unopenable(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "gallery"
    if kind == "file":
        folder.write_text("not a folder")
    elif kind == "corrupt":
        (folder / "images").mkdir(parents=True)
        (folder / "gallery.db").write_bytes(b"this is not sqlite" * 500)
    elif kind == "newer":
        Gallery(folder).close()
        with raw(folder) as conn:
            conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    return folder


@pytest.mark.parametrize("kind, action, message", [
    ("corrupt", ["check"], "file is not a database"),
    ("file", ["search", "dog"], "is a file, not a gallery folder"),
    ("missing", ["export", "out.json"], "There is no gallery at"),
    ("newer", ["repair"], "made by a newer captioner"),
])
def test_unopenable_gallery_is_one_line_and_exit_2(tmp_path, kind, action, message):
    folder = unopenable(tmp_path, kind)
    result = run(*action, "--gallery", str(folder))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    if kind == "missing":
        assert not folder.exists()  # a command never creates a gallery


def test_export_format_follows_the_file_name(folder, tmp_path, capsys):
    from captioner.cli.main import main  # in-process: quicker than another subprocess

    assert main(["gallery", "export", str(tmp_path / "out.CSV"), "--gallery", str(folder)]) == 0
    assert "(csv)" in capsys.readouterr().out
    assert (tmp_path / "out.CSV").read_text(encoding="utf-8").startswith("id,image_hash,image_path,")


# ------------------------------------------------------------------ list, sort/filter, edit, history, trash
class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """`captioner gallery ...` in this process (the subprocess tests above cover the real command)."""
    from captioner.cli.main import main

    def call(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(["gallery", *args])
        except SystemExit as exc:  # argparse
            code = exc.code
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return call


def lines(result: Result) -> list[list[str]]:
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_list_and_search_sort_and_filter(folder, cli):
    g = Gallery(folder)
    g.save(make_image(4), "m2.png", "a dog asleep", model_name="other-model", confidence=0.9)
    g.close()
    assert [r[0] for r in lines(cli("list", "--gallery", str(folder)))] == ["4", "3", "2", "1"]
    assert [r[0] for r in lines(cli("list", "--ascending", "--limit", "2", "--gallery", str(folder)))] == ["1", "2"]
    assert [r[0] for r in lines(cli("list", "--model", "other-model", "--gallery", str(folder)))] == ["4"]
    assert [r[0] for r in lines(cli("search", "dog", "--sort", "confidence", "--gallery", str(folder)))] == \
        ["4", "3", "1"]
    assert [r[0] for r in lines(cli("search", "dog NOT beach", "--model", "test-model", "--gallery", str(folder)))] \
        == ["3"]
    assert cli("models", "--gallery", str(folder)).stdout.split() == ["other-model", "test-model"]


@pytest.mark.parametrize("argv, message", [
    (["search", "%"], "has no searchable word"),
    (["search", "NOT dog"], "NOT without a word"),
    (["list", "--saved-from", "yesterday"], "is not a date"),
    (["list", "--min-confidence", "lots"], "confidence must be a number"),
    (["edit", "99", "a new caption"], "There is no item 99"),
    (["edit", "1", "   "], "The new caption is empty"),
    (["history", "99"], "There is no item 99"),
])
def test_usage_errors_are_one_line_and_exit_2(folder, cli, argv, message):
    result = cli(*argv, "--gallery", str(folder))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_edit_history_delete_trash_restore_empty(folder, cli):
    edited = cli("edit", "1", "my dog at Brighton", "--gallery", str(folder))
    assert edited.returncode == 0 and "“my dog at Brighton” (was “a dog on the beach”" in edited.stdout
    history = lines(cli("history", "1", "--gallery", str(folder)))
    assert [h[1] for h in history] == ["a dog on the beach", "my dog at Brighton"] and history[-1][0] == "now"
    deleted = cli("delete", "1", "2", "7", "--gallery", str(folder))
    assert deleted.returncode == 2 and "error: item 7 is not in the gallery" in deleted.stderr
    assert deleted.stdout.count("moved to the trash") == 2  # the others were still done
    assert [r[0] for r in lines(cli("list", "--gallery", str(folder)))] == ["3"]
    assert [(r[0], r[2]) for r in lines(cli("trash", "--gallery", str(folder)))] == \
        [("2", "a cat on a sofa"), ("1", "my dog at Brighton")] or \
        [(r[0], r[2]) for r in lines(cli("trash", "--gallery", str(folder)))] == \
        [("1", "my dog at Brighton"), ("2", "a cat on a sofa")]  # deleted in the same second
    assert cli("restore", "2", "--gallery", str(folder)).returncode == 0
    refused = cli("empty-trash", "--gallery", str(folder))
    assert refused.returncode == 2 and "removes 1 item(s) and their files for good: add --yes" in refused.stderr
    assert Gallery(folder).trash().total == 1
    emptied = cli("empty-trash", "--yes", "--gallery", str(folder))
    assert emptied.returncode == 0 and "removed 1 item(s)" in emptied.stdout
    g = Gallery(folder)
    assert g.trash().total == 0 and [i["id"] for i in g.browse().items] == [3, 2]
    assert g.integrity_check() == "ok" and g.orphan_images() == []
