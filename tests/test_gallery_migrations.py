"""Gallery schema versions: migrations, a gallery written by release 0.1.0, moved galleries."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from captioner.storage import Gallery, GalleryError, migrations, schema
from test_gallery import add, candidates_for, make_image

FIXTURE = Path(__file__).parent / "fixtures" / "gallery-0.1.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))


#: The item fields added since 0.1.0, as a 0.1.0 item has them after migrating.
ADDED = {"edited_at": None, "kind": "photo", "video_path": None, "duration": None,
         "tags": [], "confidence": None, "deleted_at": None}


@pytest.fixture
def old_gallery(tmp_path) -> Path:
    """A copy of the gallery written by captioner 0.1.0 (tests/fixtures/make_gallery_0_1_0.py)."""
    folder = tmp_path / "moved" / "gallery"
    shutil.copytree(FIXTURE, folder)
    return folder


@contextlib.contextmanager
def raw(folder: Path) -> Iterator[sqlite3.Connection]:
    """A plain SQLite connection, in autocommit mode; the committed fixture is only ever read."""
    db = folder / "gallery.db"
    if folder == FIXTURE:  # immutable: no lock, no -wal/-shm files next to the fixture
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?immutable=1", uri=True)
    else:
        conn = sqlite3.connect(db, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def user_version(folder: Path) -> int:
    with raw(folder) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def schema_of(folder: Path) -> dict:
    """Everything about the schema that matters: columns, indexes, search index, triggers."""
    with raw(folder) as conn:
        objects = {name: sql for kind, name, sql in
                   conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name != 'items'")}
        columns = conn.execute("PRAGMA table_info(items)").fetchall()
        indexes = [(i[1], conn.execute(f"PRAGMA index_info({i[1]})").fetchall())
                   for i in conn.execute("PRAGMA index_list(items)")]
    return {"objects": objects, "columns": columns, "indexes": indexes}


def downgrade(folder: Path, version: int) -> None:
    """Turn a gallery made by this code into one of schema ``version``, as that version's code made it:
    a new gallery.db built by the first ``version`` migrations, holding the items (and segments) with
    the columns that version had.  Caption history, features and the trash are not kept."""
    db = folder / "gallery.db"
    source = folder / "newer.db"
    with raw(folder) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.replace(source)
    for leftover in folder.glob("gallery.db-*"):
        leftover.unlink()
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for migration in migrations.MIGRATIONS[:version]:
            migration.apply(sqlite_utils.Database(conn))
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("ATTACH DATABASE ? AS newer", [str(source)])
        for table in ("items", "segments"):
            columns = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
            if columns:
                names = ", ".join(f'"{c}"' for c in columns)
                live = " WHERE deleted_at IS NULL" if table == "items" else \
                    " WHERE item_id IN (SELECT id FROM newer.items WHERE deleted_at IS NULL)"
                conn.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM newer.{table}{live}")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE newer")
    source.unlink()


def relative(item: dict, folder: Path) -> dict:
    return {**item, "image_path": Path(item["image_path"]).relative_to(folder).as_posix()}


# ----------------------------------------------------------------- the list
def test_migrations_are_numbered_and_cover_every_column():
    assert [m.version for m in migrations.MIGRATIONS] == list(range(1, migrations.LATEST + 1))
    versions = [c.since for c in schema.COLUMNS]
    assert versions == sorted(versions), "ALTER TABLE appends: newer columns go at the end"
    assert set(versions) <= {m.version for m in migrations.MIGRATIONS}
    assert len({c.name for c in schema.COLUMNS}) == len(schema.COLUMNS)


def test_one_column_list_drives_everything(tmp_path):
    g = Gallery(tmp_path / "g")
    item = g.get(add(g, "a dog", 1))
    assert list(item) == schema.ITEM_KEYS == schema.EXPORT_FIELDS
    assert "attention" not in schema.LIGHT and "alternatives" not in schema.LIGHT
    assert "attention" in schema.FULL and "image_file" in schema.LIGHT
    with raw(g.folder) as conn:
        names = [r[1] for r in conn.execute("PRAGMA table_info(items)")]
    assert names == [c.name for c in schema.COLUMNS]
    assert set(schema.FTS_COLUMNS) <= set(names)


def test_fresh_gallery_has_the_latest_version(tmp_path):
    g = Gallery(tmp_path / "g")
    assert g.schema_version == migrations.LATEST == user_version(g.folder)
    g.close()
    Gallery(tmp_path / "g").close()  # opening again changes nothing
    assert user_version(tmp_path / "g") == migrations.LATEST


# ------------------------------------------------------- release 0.1.0
def test_fixture_is_a_0_1_0_gallery():
    assert EXPECTED["captioner"] == "0.1.0"
    assert not list(FIXTURE.glob("gallery.db-*")), "commit gallery.db checkpointed, without -wal/-shm"
    assert user_version(FIXTURE) == 0
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 200_000


def test_0_1_0_gallery_migrates_and_keeps_everything(old_gallery):
    g = Gallery(old_gallery)
    assert g.schema_version == migrations.LATEST == user_version(old_gallery)
    # every item, caption and candidate (with its attention maps), as 0.1.0 read them back
    items = [relative(item, old_gallery) for item in g.iter_items()]
    assert [{k: v for k, v in item.items() if k not in ADDED} for item in items] == EXPECTED["items"]
    assert all(item["edited_at"] is None for item in items)  # 0.1.0 did not record edits
    assert all({k: item[k] for k in ADDED} == ADDED for item in items)  # 0.1.0 had photos only
    for expected in EXPECTED["items"]:
        assert relative(g.get(expected["id"]), old_gallery) == {**expected, **ADDED}
    for item_id in EXPECTED["deleted_ids"]:
        assert g.get(item_id) is None
    assert g.count() == len(EXPECTED["items"]) == 5
    # what the fixture was made to hold
    by_name = {item["original_name"]: item for item in items}
    assert by_name["square.png"]["image_path"] == by_name["copy of square.png"]["image_path"]
    assert by_name["café_日本の犬.jpg"]["image_path"].endswith(".jpg")
    assert by_name["beach.png"]["caption"] == "a brown dog running along the sand"
    for cand in by_name["square.png"]["candidates"]:  # one 2 x 2 map per word
        assert len(cand["attention"]) == len(cand["tokens"]) and len(cand["attention"][0]) == 2
    assert by_name["sky.png"]["candidates"] == []
    # search results, page items without attention
    for query, result in EXPECTED["searches"].items():
        page = g.search(query)
        assert ([i["id"] for i in page.items], page.match_all) == (result["ids"], result["match_all"]), query
    # image files: all there, nothing extra, bytes match their hash
    files = sorted(p.relative_to(old_gallery).as_posix() for p in g.images_dir.rglob("*") if p.is_file())
    assert files == EXPECTED["image_files"]
    for item in g.iter_items():
        assert hashlib.sha256(Path(item["image_path"]).read_bytes()).hexdigest() == item["image_hash"]
    assert g.integrity_check() == "ok" and g.orphan_images() == [] and g.missing_images() == []


def test_migrated_schema_equals_a_fresh_one(old_gallery, tmp_path):
    Gallery(old_gallery).close()
    Gallery(tmp_path / "fresh").close()
    migrated, fresh = schema_of(old_gallery), schema_of(tmp_path / "fresh")
    assert migrated == fresh
    assert "edited_at" in [c[1] for c in fresh["columns"]]


def test_version_1_creates_what_0_1_0_created(tmp_path):
    """Apart from the items table's text (compared column by column above), the SQL is identical."""
    before = schema_of(FIXTURE)
    (tmp_path / "fresh").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "fresh" / "gallery.db", isolation_level=None)) as conn:
        migrations.MIGRATIONS[0].apply(sqlite_utils.Database(conn))  # version 1 only: later ones add objects
    after = schema_of(tmp_path / "fresh")
    assert before["objects"] == after["objects"] and before["indexes"] == after["indexes"]
    assert before["columns"] == after["columns"][:len(before["columns"])]


def test_migrated_gallery_keeps_working(old_gallery):
    g = Gallery(old_gallery)
    new_id = add(g, "a zebra on the lawn", 77)
    assert new_id == 7  # the deleted item's id 5 and the last id 6 are never reused
    assert [i["id"] for i in g.search("zebra").items] == [new_id]
    g.update_caption(1, "a crimson square")
    assert g.get(1)["edited_at"] is not None and g.get(2)["edited_at"] is None
    assert [i["id"] for i in g.search("crimson").items] == [1]
    shared = Path(g.get(2)["image_path"])
    assert g.delete(1) and g.empty_trash() == 1 and shared.exists()  # item 2 still uses the picture
    assert g.delete(2) and shared.exists()  # in the trash: kept
    assert g.restore(2) and g.get(2)["caption"] == "a red box on the lawn"
    assert g.delete(2) and g.empty_trash() == 1 and not shared.exists()
    assert g.integrity_check() == "ok"


def test_newer_gallery_is_refused(tmp_path):
    folder = tmp_path / "g"
    g = Gallery(folder)
    add(g, "from the future", 1)
    g.close()
    with raw(folder) as conn:
        conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    with pytest.raises(GalleryError, match="made by a newer captioner .*upgrade captioner"):
        Gallery(folder)
    assert user_version(folder) == migrations.LATEST + 1  # left as it was


def test_failed_migration_changes_nothing(old_gallery, monkeypatch):
    add_column = migrations.MIGRATIONS[1].apply

    def add_column_then_fail(db):
        add_column(db)
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    broken = (migrations.MIGRATIONS[0], migrations.Migration(2, "fails", add_column_then_fail))
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    with pytest.raises(GalleryError, match="Could not open the gallery .*simulated"):
        Gallery(old_gallery)
    assert user_version(old_gallery) == 0
    with raw(old_gallery) as conn:
        assert "edited_at" not in [r[1] for r in conn.execute("PRAGMA table_info(items)")]
    monkeypatch.undo()
    assert Gallery(old_gallery).count() == 5 and user_version(old_gallery) == migrations.LATEST


def open_and_save(folder: str, n: int, barrier) -> None:
    """Child process: open a not yet migrated gallery at the same moment as the others, save."""
    barrier.wait(60)
    g = Gallery(folder)
    g.save(make_image(1000 + n), f"p{n}.png", f"process {n} was here", candidates_for("x"))
    g.close()


def test_processes_opening_an_old_gallery_at_once(old_gallery):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=open_and_save, args=(str(old_gallery), n, barrier)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    g = Gallery(old_gallery)
    assert g.count() == 5 + 4 and g.schema_version == migrations.LATEST
    assert g.search("process").total == 4 and g.integrity_check() == "ok"


# ---------------------------------------------------- paths relative to the gallery
def stored_text(folder: Path) -> list[str]:
    with raw(folder) as conn:
        rows = conn.execute("SELECT * FROM items").fetchall()
    return [value for row in rows for value in row if isinstance(value, str)]


def test_moved_gallery_reads_every_image(tmp_path):
    first = tmp_path / "first"
    g = Gallery(first)
    ids = [add(g, f"picture {i}", i % 3) for i in range(6)]  # some share an image
    g.save(make_image(9), str(tmp_path / "in" / "x.png"), "saved with a full path as its name")
    g.close()
    for value in stored_text(first):
        assert not os.path.isabs(value) and str(tmp_path) not in value, value
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first, moved)
    shutil.rmtree(first)  # nothing may still point there
    copy = Gallery(moved)
    items = list(copy.iter_items())
    assert [i["id"] for i in items[:6]] == ids and len(items) == 7
    for item in items:
        path = Path(item["image_path"])
        assert path.is_relative_to(moved)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item["image_hash"]
    assert items[-1]["original_name"] == "x.png"
    assert copy.orphan_images() == [] and copy.missing_images() == []


@pytest.mark.parametrize("name, stored", [("/home/me/pics/cat.png", "cat.png"),
                                          ("C:\\Users\\me\\dog.jpg", "dog.jpg"),
                                          ("plain.png", "plain.png"), ("", "")])
def test_original_name_keeps_no_folders(tmp_path, name, stored):
    g = Gallery(tmp_path / "g")
    assert g.get(g.save(make_image(1), name, "c"))["original_name"] == stored


# ------------------------------------------------------- check and repair helpers
def test_orphans_missing_images_and_search_rebuild(tmp_path):
    g = Gallery(tmp_path / "g")
    keep, lost = add(g, "a kept dog", 1), add(g, "a lost cat", 2)
    orphan = g.images_dir / "ab" / ("ab" + "0" * 62 + ".png")
    orphan.parent.mkdir()
    orphan.write_bytes(make_image(3))
    Path(g.get(lost)["image_path"]).unlink()
    assert g.orphan_images() == [orphan] and orphan.exists()  # listed, not removed
    assert g.missing_images() == [lost]
    damage_search_index(g.folder, keep)
    assert g.search("dog").total == 0
    assert g.integrity_check() == "search index: 1 item(s) missing from it, 1 entry(ies) for no item"
    g.rebuild_search_index()
    assert g.integrity_check() == "ok"
    assert [i["id"] for i in g.search("dog").items] == [keep]
    assert g.search("ghost").total == 0


def damage_search_index(folder: Path, item_id: int) -> None:
    """Take an item out of the search index and add an entry for no item, as a crash mid-way could."""
    with raw(folder) as conn:
        row = conn.execute("SELECT caption, alternatives, original_name FROM items WHERE id = ?", [item_id]).fetchone()
        conn.execute("INSERT INTO items_fts(items_fts, rowid, caption, alternatives, original_name) "
                     "VALUES('delete', ?, ?, ?, ?)", [item_id, *row])
        conn.execute("INSERT INTO items_fts(rowid, caption, alternatives, original_name) "
                     "VALUES(999, 'a ghost', '', '')")


# ------------------------------------------------------- schema version 3 (before tags, trash, history)
FIXTURE_V3 = Path(__file__).parent / "fixtures" / "gallery-v3"
EXPECTED_V3 = json.loads((FIXTURE_V3 / "expected.json").read_text(encoding="utf-8"))
#: The item fields schema version 4 added, as a version 3 item has them after migrating.
ADDED_V4 = {"tags": [], "confidence": None, "deleted_at": None}


@pytest.fixture
def v3_gallery(tmp_path) -> Path:
    """A copy of a gallery written by the schema version 3 code (tests/fixtures/make_gallery_v3.py)."""
    folder = tmp_path / "v3" / "gallery"
    shutil.copytree(FIXTURE_V3, folder)
    return folder


def relative_v3(item: dict, folder: Path) -> dict:
    item = relative(item, folder)
    if item["video_path"]:
        item["video_path"] = Path(item["video_path"]).relative_to(folder).as_posix()
    for segment in item.get("segments", []):
        segment.pop("tags")  # added by version 4 (empty here)
    return item


def rows_of(folder: Path) -> dict:
    """Every row of the tables version 3 had (not the search indexes), for before/after comparisons."""
    with raw(folder) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in ("items", "segments")}


def test_fixture_is_a_v3_gallery():
    assert EXPECTED_V3["schema_version"] == 3 == user_version(FIXTURE_V3)
    assert not list(FIXTURE_V3.glob("gallery.db-*"))
    kinds = [item["kind"] for item in EXPECTED_V3["items"]]
    assert kinds.count("video") == 2 and kinds.count("photo") == 5


def test_v3_gallery_migrates_and_keeps_everything(v3_gallery):
    g = Gallery(v3_gallery)
    assert g.schema_version == migrations.LATEST == user_version(v3_gallery) == 4
    items = [relative_v3(item, v3_gallery) for item in g.iter_items()]
    assert [{k: v for k, v in item.items() if k not in ADDED_V4} for item in items] == EXPECTED_V3["items"]
    assert all({k: item[k] for k in ADDED_V4} == ADDED_V4 for item in items)
    for item_id in EXPECTED_V3["deleted_ids"]:
        assert g.get(item_id, include_trash=True) is None
    assert g.count() == len(EXPECTED_V3["items"]) and g.trash().total == 0
    for query, result in EXPECTED_V3["searches"].items():
        if not result["ids"]:
            assert g.search(query).total == 0, query
            continue
        page = g.search(query)
        assert ([i["id"] for i in page.items], page.match_all) == (result["ids"], result["match_all"]), query
    files = sorted(p.relative_to(v3_gallery).as_posix() for d in (g.images_dir, g.videos_dir)
                   for p in d.rglob("*") if p.is_file())
    assert files == EXPECTED_V3["files"]
    for item in g.iter_items():
        assert hashlib.sha256(Path(item["image_path"]).read_bytes()).hexdigest() == item["image_hash"]
    assert g.integrity_check() == "ok" and g.orphan_images() == [] and g.missing_videos() == []
    # the new things work on the old items; the old edit has no history (version 3 kept none)
    ride = next(i["id"] for i in items if i["original_name"] == "ride.mov")
    assert g.history(ride) == [] and g.get(ride)["edited_at"] is not None
    g.update_caption(ride, "a bike ride")
    assert [h["caption"] for h in g.history(ride)] == ["my son riding his new bicycle"]
    assert g.delete(ride) and g.restore(ride)
    kitchen = g.search("kitchen").items[0]
    assert kitchen["highlight"] == "a man cooking in a <mark>kitchen</mark> · a cat sleeping on a sofa"
    assert [s["idx"] for s in kitchen["matched_segments"]] == [0]
    assert [i["id"] for i in g.search("men").items] == [kitchen["id"]]  # irregular forms, old items too


def test_v3_migrated_schema_equals_a_fresh_one(v3_gallery, tmp_path):
    Gallery(v3_gallery).close()
    Gallery(tmp_path / "fresh").close()
    assert schema_of(v3_gallery) == schema_of(tmp_path / "fresh")
    with raw(v3_gallery) as conn:
        fts_columns = [r[1] for r in conn.execute("PRAGMA table_info(items_fts)")]
        triggers = {name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")}
    assert fts_columns == schema.FTS_COLUMNS and fts_columns[-1] == "tag_text"
    assert all("tag_text" in triggers[f"items_{t}"] for t in ("ai", "ad", "au"))
    assert all("tag_text" in triggers[f"segments_{t}"] for t in ("ai", "ad", "au"))


@pytest.mark.parametrize("fail_after", ["columns", "search index", "everything"])
def test_failed_v4_migration_leaves_the_v3_gallery_as_it_was(v3_gallery, monkeypatch, fail_after):
    before_rows, before_schema = rows_of(v3_gallery), schema_of(v3_gallery)
    real_v4 = migrations.MIGRATIONS[3].apply

    def fail(db):
        if fail_after == "columns":
            migrations._add_columns(4)(db)
        elif fail_after == "search index":
            migrations._add_columns(4)(db)
            migrations._replace_fts(db, "items", "items_fts", schema.FTS_COLUMNS)
        else:
            real_v4(db)
        raise sqlite3.OperationalError("disk full (simulated)")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS[:3], migrations.Migration(4, "x", fail)))
    with pytest.raises(GalleryError, match="simulated"):
        Gallery(v3_gallery)
    assert user_version(v3_gallery) == 3
    assert rows_of(v3_gallery) == before_rows and schema_of(v3_gallery) == before_schema
    monkeypatch.undo()
    # opened again: migrates, every record once
    g = Gallery(v3_gallery)
    assert g.schema_version == 4 and g.count() == len(EXPECTED_V3["items"])
    assert [i["id"] for i in g.iter_items()] == [i["id"] for i in EXPECTED_V3["items"]]
    assert g.integrity_check() == "ok"


def test_processes_opening_a_v3_gallery_at_once(v3_gallery):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=open_and_save, args=(str(v3_gallery), n, barrier)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 3
    g = Gallery(v3_gallery)
    assert g.count() == len(EXPECTED_V3["items"]) + 3 and g.integrity_check() == "ok"
    assert g.search("process").total == 3 and g.search("kitchen").total == 1
