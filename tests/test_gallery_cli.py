"""`captioner gallery check|repair|search|export`, run as a user would (a subprocess)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from captioner.storage import Gallery, GalleryError, migrations
from test_gallery import add, make_image
from test_gallery_migrations import FIXTURE, damage_search_index, raw, user_version


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
    assert "moved 1 orphaned file(s) to " in fixed.stdout and "rebuilt the search index" in fixed.stdout
    assert fixed.returncode == 1 and fixed.stdout.count("still wrong") == 1  # it cannot bring a picture back
    assert "still wrong: missing image file: item 2" in fixed.stdout
    assert not orphan.exists() and len(list((folder / "quarantine").rglob(orphan.name))) == 1  # moved, not deleted
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
    (["list", "--min-confidence", "2"], "--min-confidence must be between 0 and 1, not 2.0"),
    (["edit", "99", "a new caption"], "There is no item 99"),
    (["edit", "1", "   "], "The new caption is empty"),
    (["history", "99"], "There is no item 99"),
])
def test_usage_errors_are_one_line_and_exit_2(folder, cli, argv, message):
    result = cli(*argv, "--gallery", str(folder))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_a_confidence_that_is_not_a_number_is_refused_by_the_parser(folder, cli):
    result = cli("list", "--min-confidence", "lots", "--gallery", str(folder))  # a number flag, as every other
    assert result.returncode == 2 and "--min-confidence: invalid float value: 'lots'" in result.stderr, result.stderr
    assert result.stdout == ""


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


# ------------------------------------------------------------------ never lose a photo (issue: fault run)
def media(folder: Path) -> list[Path]:
    return sorted(p for sub in ("images", "videos") for p in (folder / sub).rglob("*") if p.is_file())


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_an_emptied_database_is_refused_and_nothing_is_deleted_or_created(folder, cli):
    photos = media(folder)
    (folder / "gallery.db").write_bytes(b"")  # `truncate -s 0 gallery.db`
    for action in (["check"], ["repair"], ["list"], ["search", "dog"]):
        result = cli(*action, "--gallery", str(folder))
        assert result.returncode == 2 and result.stdout == "", (action, result.stdout)
        line = one_error_line(result)
        assert "gallery.db is empty (0 bytes)" in line and "restore-db" in line, line
    with pytest.raises(GalleryError, match="is empty"):
        Gallery(folder)  # the studio opens it this way
    assert (folder / "gallery.db").stat().st_size == 0  # the evidence is kept
    assert media(folder) == photos


def test_a_foreign_sqlite_file_is_not_turned_into_a_gallery(folder, cli):
    import sqlite3

    db = folder / "gallery.db"
    db.unlink()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()
    before = db.read_bytes()
    result = cli("check", "--gallery", str(folder))
    assert result.returncode == 2 and "not a gallery" in one_error_line(result) and "notes" in result.stderr
    with pytest.raises(GalleryError, match="not a gallery"):
        Gallery(folder)
    assert db.read_bytes() == before and len(media(folder)) == 3


def test_no_database_is_created_beside_photos_or_in_a_folder_in_use(folder, tmp_path):
    photos = media(folder)
    (folder / "gallery.db").unlink()
    with pytest.raises(GalleryError, match=r"holds 3 photo and video file\(s\) but no gallery.db"):
        Gallery(folder)
    assert not (folder / "gallery.db").exists() and media(folder) == photos
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    (pictures / "holiday.jpg").write_bytes(make_image(1))
    with pytest.raises(GalleryError, match="only in an empty or new folder"):
        Gallery(pictures)
    assert sorted(p.name for p in pictures.iterdir()) == ["holiday.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    Gallery(empty).close()  # an empty or new folder is fine
    assert (empty / "gallery.db").is_file()


def orphan_rows(folder: Path, keep: int) -> None:
    """Delete the rows of every item but the first ``keep`` (what a damaged or wrong database looks like)."""
    with raw(folder) as conn:
        conn.execute("DELETE FROM items WHERE id > ?", [keep])


def test_repair_quarantines_orphans_and_purge_empties_the_quarantine(folder, cli):
    orphan = folder / "images" / "ab" / ("ab" + "0" * 62 + ".png")
    orphan.parent.mkdir()
    orphan.write_bytes(make_image(9))
    fixed = cli("repair", "--gallery", str(folder))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "moved 1 orphaned file(s) to" in fixed.stdout and "quarantine" in fixed.stdout
    assert not orphan.exists()
    kept = [p for p in (folder / "quarantine").rglob("*") if p.is_file()]
    assert len(kept) == 1 and kept[0].read_bytes() == make_image(9)
    assert kept[0].relative_to(folder / "quarantine").parts[1:] == ("images", "ab", orphan.name)
    assert "1 file(s) in the quarantine" in cli("check", "--gallery", str(folder)).stdout
    purged = cli("repair", "--purge", "--gallery", str(folder))
    assert purged.returncode == 0 and "deleted 1 file(s) from the quarantine" in purged.stdout
    assert not [p for p in (folder / "quarantine").rglob("*") if p.is_file()]
    assert Gallery(folder).count() == 3 and len(media(folder)) == 3


def test_repair_refuses_when_too_many_files_would_be_orphaned(tmp_path, cli):
    g = Gallery(tmp_path / "gallery")
    for seed in range(30):
        add(g, f"photo number {seed}", seed)
    g.close()
    folder = g.folder
    photos = media(folder)
    orphan_rows(folder, 5)  # the database lost 25 of its 30 rows
    refused = cli("repair", "--gallery", str(folder))
    assert refused.returncode == 2 and refused.stdout == ""
    line = one_error_line(refused)
    assert "25 of the 30" in line and "--force" in line and "restore-db" in line, line
    assert media(folder) == photos and not (folder / "quarantine").exists()
    forced = cli("repair", "--force", "--gallery", str(folder))
    assert forced.returncode == 0 and "moved 25 orphaned file(s)" in forced.stdout
    assert len([p for p in (folder / "quarantine").rglob("*") if p.is_file()]) == 25  # none deleted


def test_backup_is_a_consistent_copy_while_the_gallery_is_in_use(folder, cli, tmp_path):
    import sqlite3

    live = Gallery(folder)
    add(live, "a fourth photo", 4)
    with live._write():  # another writer is in the middle of a transaction
        result = cli("backup", str(tmp_path / "copy.db"), "--gallery", str(folder))
    assert result.returncode == 0 and "4 items" in result.stdout, result.stdout + result.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "copy.db")) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 4
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = cli("backup", str(tmp_path / "copy.db"), "--gallery", str(folder))
    assert again.returncode == 2 and "already exists" in one_error_line(again)  # never overwrites
    live.close()
    (tmp_path / "backups").mkdir()
    into_folder = cli("backup", str(tmp_path / "backups"), "--gallery", str(folder))
    assert into_folder.returncode == 0 and [p.name[:8] for p in (tmp_path / "backups").iterdir()] == ["gallery-"]


def test_a_gallery_that_cannot_open_on_a_nearly_full_disk_says_so(folder, monkeypatch):
    import sqlite3
    from types import SimpleNamespace

    from captioner.storage import opening

    monkeypatch.setattr(opening.os, "statvfs", lambda _: SimpleNamespace(f_bavail=6, f_frsize=4096))

    def no_room(self):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Gallery, "_enable_wal", no_room)
    with pytest.raises(GalleryError, match=r"disk I/O error \(the disk is full: 24 KB free"):
        Gallery(folder)


def test_restore_db_brings_back_an_emptied_gallery(folder, cli, tmp_path):
    assert cli("backup", str(tmp_path / "copy.db"), "--gallery", str(folder)).returncode == 0
    (folder / "gallery.db").write_bytes(b"")
    restored = cli("restore-db", str(tmp_path / "copy.db"), "--gallery", str(folder))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored" in restored.stdout and "3 items" in restored.stdout
    assert cli("check", "--gallery", str(folder)).returncode == 0
    not_a_gallery = tmp_path / "notes.db"
    not_a_gallery.write_bytes(b"not sqlite at all" * 100)
    refused = cli("restore-db", str(not_a_gallery), "--gallery", str(folder))
    assert refused.returncode == 2 and "is not a gallery database" in one_error_line(refused)
    assert Gallery(folder).count() == 3


def test_a_migration_keeps_a_copy_of_the_database_beside_it(tmp_path):
    folder = tmp_path / "gallery"
    shutil.copytree(FIXTURE, folder)
    original = (folder / "gallery.db").read_bytes()
    Gallery(folder).close()
    assert user_version(folder) == migrations.LATEST
    copies = sorted(folder.glob("gallery.db.v1*.bak"))
    assert [p.name for p in copies] == ["gallery.db.v1.bak"]
    with contextlib.closing(__import__("sqlite3").connect(copies[0])) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0  # as release 0.1.0 left it
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == \
            __import__("sqlite3").connect(f"{(FIXTURE / 'gallery.db').resolve().as_uri()}?immutable=1",
                                          uri=True).execute("SELECT count(*) FROM items").fetchone()[0]
    assert len(original) > 0
    Gallery(folder).close()
    assert sorted(folder.glob("gallery.db.v*.bak")) == copies  # no migration, no new copy


# ------------------------------------------------------------------ export never replaces what is not a file
@pytest.mark.parametrize("fmt", ["json", "csv", "html-alt"])
@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_export_refuses_targets_that_are_not_regular_files(folder, cli, tmp_path, kind, fmt):
    target = tmp_path / f"out.{fmt}"
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(outside)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 7))  # /dev/full's numbers
    result = cli("export", str(target), "--format", fmt, "--gallery", str(folder))
    assert result.returncode == 2 and "not a regular file" in one_error_line(result), result.stderr
    mode = os.lstat(target).st_mode
    assert {"fifo": stat.S_ISFIFO, "symlink": stat.S_ISLNK, "device": stat.S_ISCHR}[kind](mode)
    assert outside.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_export_replaces_a_regular_file_through_a_temporary_file(folder, cli, tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old export")
    renames = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((Path(a).parent, Path(b))), real(a, b)))
    assert cli("export", str(target), "--gallery", str(folder)).returncode == 0
    assert renames == [(tmp_path, target)] and len(json.loads(target.read_text())) == 3


# ------------------------------------------------------------------ a killed import leaves no temp files
KILLED_SAVE = """
import os, signal, sys
from captioner.storage import Gallery
real = os.replace
def die(src, dst):
    if os.path.basename(src).startswith(".tmp-"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed between writing the picture and moving it into place
    return real(src, dst)
os.replace = die
Gallery(sys.argv[1]).save(sys.argv[2], "photo.png", "a photo")
"""


def test_temporary_files_of_a_killed_import_go_on_the_next_open(folder, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(42))
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(folder), str(photo)], capture_output=True)
    assert killed.returncode == -9, killed.stderr
    leftovers = list((folder / "images").rglob(".tmp-*"))
    assert len(leftovers) == 1
    g = Gallery(folder)
    assert not list((folder / "images").rglob(".tmp-*"))  # gone at once, not after an hour
    assert g.orphan_images() == [] and g.count() == 3
    g.close()
