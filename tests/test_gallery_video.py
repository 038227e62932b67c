"""Video items in the gallery (issue 14): save_video, segments, search by segment, delete, export,
schema version 3 (from a version 2 gallery), concurrency and bad input.  The gallery does not decode
videos, so most tests store a few bytes that start like an MP4 file."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import shutil
import sqlite3
import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

from captioner.storage import DuplicateItemError, Gallery, GalleryError, migrations, schema
from captioner.storage.gallery import MAX_VIDEO_CAPTION
from test_gallery import add, candidates_for, image_files, make_image
from test_gallery_cli import run
from test_gallery_migrations import downgrade, raw, schema_of, user_version


def fake_video(seed: int = 0) -> bytes:
    """Bytes that start like an MP4 file (the gallery only hashes and copies them)."""
    return b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + hashlib.sha256(str(seed).encode()).digest() * 8


SEGMENTS = [
    {"start": 0.0, "end": 3.2, "caption": "a man walks on a street",
     "candidates": candidates_for("a man walks on a street", "a person on a road")},
    {"start": 3.2, "end": 7.9, "caption": "a dog runs on the grass",
     "candidates": candidates_for("a dog runs on the grass", "a puppy in a park")},
    {"start": 7.9, "end": 12.0, "caption": "a man walks on a street", "candidates": []},
]


def save(g: Gallery, seed: int = 0, segments=None, name: str = "clip.mp4", **kw) -> int:
    return g.save_video(fake_video(seed), name, SEGMENTS if segments is None else segments,
                        model_name="test-model", beam_size=3, **kw)


def video_files(g: Gallery) -> list[Path]:
    return sorted(p for p in g.videos_dir.rglob("*") if p.is_file())


def segment_rows(g: Gallery) -> int:
    with raw(g.folder) as conn:
        return conn.execute("SELECT count(*) FROM segments").fetchone()[0]


@pytest.fixture
def g(tmp_path):
    gallery = Gallery(tmp_path / "gallery")
    yield gallery
    gallery.close()


# ------------------------------------------------------------------ save and get
def test_save_video_and_get_it_back(g):
    photo = add(g, "a red square", 1)
    item_id = save(g, width=640, height=480)
    item = g.get(item_id)
    assert item["kind"] == "video" and item["original_name"] == "clip.mp4"
    assert item["caption"] == "a man walks on a street · a dog runs on the grass"  # distinct, in order
    assert item["duration"] == 12.0  # the last segment's end when not given
    assert (item["width"], item["height"], item["beam_size"], item["model_name"]) == (640, 480, 3, "test-model")
    video = Path(item["video_path"])
    assert video.is_absolute() and video.read_bytes() == fake_video(0)
    digest = hashlib.sha256(fake_video(0)).hexdigest()
    assert video == g.folder / "videos" / digest[:2] / f"{digest}.mp4"
    with raw(g.folder) as conn:  # stored relative to the gallery folder
        assert conn.execute("SELECT video_file FROM items WHERE id = ?", [item_id]).fetchone()[0] == \
            f"videos/{digest[:2]}/{digest}.mp4"
    # the picture: a placeholder PNG, like a photo's image
    with Image.open(item["image_path"]) as poster:
        assert poster.format == "PNG" and poster.size == (160, 90)
    assert [(s["idx"], s["start"], s["end"], s["caption"]) for s in item["segments"]] == \
        [(i, s["start"], s["end"], s["caption"]) for i, s in enumerate(SEGMENTS)]
    for seg, given in zip(item["segments"], SEGMENTS):  # candidates kept, attention dropped
        assert seg["candidates"] == [{k: v for k, v in c.items() if k != "attention"} for c in given["candidates"]]
    assert item["candidates"] == []
    # photos: kind 'photo', no video, no segments key
    photo_item = g.get(photo)
    assert (photo_item["kind"], photo_item["video_path"], photo_item["duration"]) == ("photo", None, None)
    assert "segments" not in photo_item
    # pages: light items, no segments
    page = g.browse()
    assert [i["id"] for i in page.items] == [item_id, photo]
    assert page.items[0]["kind"] == "video" and "segments" not in page.items[0]
    assert g.integrity_check() == "ok" and g.orphan_images() == [] and g.missing_videos() == []


def test_video_from_a_path_with_a_poster_and_dedupe(g, tmp_path):
    source = tmp_path / "in" / "Holiday.MOV"
    source.parent.mkdir()
    source.write_bytes(b"not a container this code knows" * 100)
    poster = Image.new("RGB", (64, 36), (10, 200, 30))
    a = g.save_video(source, None, SEGMENTS[:1], poster=poster, duration=30)
    b = g.save_video(source.read_bytes(), "again.mov", SEGMENTS[1:2], poster=make_image(5))
    item_a, item_b = g.get(a), g.get(b)
    assert item_a["original_name"] == "Holiday.MOV" and item_a["duration"] == 30.0
    assert (item_a["width"], item_a["height"]) == (64, 36)
    assert item_a["video_path"] == item_b["video_path"] and item_a["video_path"].endswith(".mov")
    assert len(video_files(g)) == 1 and len(image_files(g)) == 2
    assert item_b["caption"] == "a dog runs on the grass" and item_b["duration"] == 7.9


def test_the_same_video_with_the_same_shots_is_refused(g, tmp_path):
    """Issue 12: saving the same video (same bytes, whatever its name) with the same shots and captions again
    raises DuplicateItemError naming the item, and changes nothing; other shots, other bytes, or the first
    item in the trash are saved."""
    first = save(g)
    rows, files, images = segment_rows(g), video_files(g), image_files(g)
    source = tmp_path / "Renamed Copy.MP4"
    source.write_bytes(fake_video(0))
    respaced = [{**seg, "caption": "  " + seg["caption"].upper() + " "} for seg in SEGMENTS]
    for video, name, segments in ((fake_video(0), "clip.mp4", SEGMENTS), (source, None, SEGMENTS),
                                  (fake_video(0), "other.mp4", respaced)):
        with pytest.raises(DuplicateItemError, match=rf"already in the gallery with these shots.*item {first}") as err:
            g.save_video(video, name, segments, model_name="test-model")
        assert err.value.item_id == first
    assert g.count() == 1 and segment_rows(g) == rows
    assert video_files(g) == files and image_files(g) == images  # no copy left behind
    assert not [p for p in g.videos_dir.rglob(".tmp-*")]
    # different shots (times or captions), or different bytes: a new item
    moved = [{**SEGMENTS[0], "end": 3.0}, {**SEGMENTS[1], "start": 3.0}, SEGMENTS[2]]
    other_times = save(g, segments=moved)
    other_caption = save(g, segments=[SEGMENTS[0], {**SEGMENTS[1], "caption": "a cat on the grass"}, SEGMENTS[2]])
    fewer = save(g, segments=SEGMENTS[:2])
    other_bytes = save(g, seed=1)
    assert len({first, other_times, other_caption, fewer, other_bytes}) == 5 and g.count() == 5
    # the first one in the trash: saving it again is allowed (the trash keeps its own)
    g.delete(first)
    again = save(g)
    assert again != first and Path(g.get(again)["video_path"]).stem == hashlib.sha256(fake_video(0)).hexdigest()
    with pytest.raises(DuplicateItemError):
        save(g)


def test_long_video_caption_is_cut_at_a_segment(g):
    segments = [{"start": i, "end": i + 1, "caption": f"scene {i} shows a long and winding road {'x' * i}"}
                for i in range(40)]
    caption = g.get(save(g, segments=segments))["caption"]
    assert len(caption) <= MAX_VIDEO_CAPTION + 10 and caption.endswith(" · …")
    assert caption.startswith("scene 0 shows a long and winding road · scene 1 shows")  # spaces tidied
    assert caption.count(" · ") == len([p for p in caption.split(" · ") if p.startswith("scene ")])


# ------------------------------------------------------------------ search
def test_search_finds_a_video_by_a_segment(g):
    add(g, "a dog on the beach", 1)
    segments = [{"start": 10 * i, "end": 10 * i + 9.5, "caption": f"part {i} of a long and quiet film " + "z" * 20}
                for i in range(30)]
    segments[25] = {"start": 250.0, "end": 259.5, "caption": "a giraffe eats leaves",
                    "candidates": candidates_for("a giraffe eats leaves", "a tall animal near a tree")}
    video = save(g, segments=segments)
    assert "giraffe" not in g.get(video)["caption"]  # only the segment has the word
    page = g.search("giraffes")  # stemmed
    assert [i["id"] for i in page.items] == [video] and page.match_all
    assert page.items[0]["matched_segments"] == [{"idx": 25, "start": 250.0, "end": 259.5,
                                                  "caption": "a giraffe eats leaves"}]
    # other candidates of a segment are searched too
    assert [i["id"] for i in g.search("tall animal").items] == [video]


def test_search_mixes_photos_and_videos(g):
    photo = add(g, "a dog on the beach", 1)
    video = save(g)
    page = g.search("dog")
    assert sorted(i["id"] for i in page.items) == sorted([photo, video]) and page.total == 2
    by_id = {i["id"]: i for i in page.items}
    assert "matched_segments" not in by_id[photo] and by_id[photo]["kind"] == "photo"
    assert by_id[video]["matched_segments"] == [{"idx": 1, "start": 3.2, "end": 7.9,
                                                "caption": "a dog runs on the grass"}]
    # a word in two segments: both, the items best-ranked first
    walks = g.search("walks")
    assert [i["id"] for i in walks.items] == [video]
    assert [s["idx"] for s in walks.items[0]["matched_segments"]] in ([0, 2], [2, 0])
    # every word in the item, not in one segment: the segments with any of them
    both = g.search("man dog").items[0]
    assert {s["idx"] for s in both["matched_segments"]} == {0, 1, 2}
    # no item has every word: match-any fallback
    fallback = g.search("dog zebra")
    assert not fallback.match_all and {i["id"] for i in fallback.items} == {photo, video}
    assert [s["idx"] for s in next(i for i in fallback.items if i["id"] == video)["matched_segments"]] == [1]
    assert g.search("zebra").total == 0
    # the file name is searched as for photos; then no segment matches
    named = g.search("clip")
    assert [i["id"] for i in named.items] == [video] and named.items[0]["matched_segments"] == []
    # ranking: a caption match beats a match in another candidate only
    beach = save(g, 7, [{"start": 0, "end": 1, "caption": "waves on a beach",
                         "candidates": candidates_for("waves on a beach", "a quiet ocean")}])
    ocean = save(g, 8, [{"start": 0, "end": 1, "caption": "an ocean at night"}])
    assert [i["id"] for i in g.search("ocean").items] == [ocean, beach]


def test_update_caption_keeps_segment_search(g):
    video = save(g)
    g.update_caption(video, "my holiday film")
    assert [i["id"] for i in g.search("holiday").items] == [video]
    assert [i["id"] for i in g.search("dog").items] == [video]  # through its segment
    assert g.get(video)["segments"][1]["caption"] == "a dog runs on the grass"


# ------------------------------------------------------------------ delete, orphans, check
def test_delete_removes_segments_and_the_video_file(g):
    a = save(g)
    b = save(g, segments=SEGMENTS[:1])  # the same video bytes
    other = save(g, 1)
    path = Path(g.get(a)["video_path"])
    assert segment_rows(g) == 3 + 1 + 3
    assert g.delete(a)  # to the trash: segments and file kept, out of search
    assert path.exists() and segment_rows(g) == 3 + 1 + 3 and g.search("dog").total == 1
    assert g.empty_trash() == 1
    assert path.exists() and segment_rows(g) == 1 + 3  # b still uses the file
    assert g.search("dog").total == 1
    assert g.delete(b) and g.empty_trash() == 1
    assert not path.exists() and segment_rows(g) == 3
    assert Path(g.get(other)["video_path"]).exists()
    assert g.delete(other) and g.empty_trash() == 1
    assert video_files(g) == [] and image_files(g) == [] and segment_rows(g) == 0
    assert g.search("dog").total == 0 and g.integrity_check() == "ok"


def test_orphan_and_missing_videos(g):
    keep = save(g)
    orphan = g.videos_dir / "ab" / ("ab" + "0" * 62 + ".mp4")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    assert g.orphan_images() == [orphan]
    assert g.remove_orphan_images() == [orphan] and not orphan.exists()
    assert Path(g.get(keep)["video_path"]).exists()
    lost = save(g, 2)
    Path(g.get(lost)["video_path"]).unlink()
    assert g.missing_videos() == [lost] and g.missing_images() == []
    check = run("check", "--gallery", str(g.folder))
    assert check.returncode == 1 and f"missing video file: item {lost}" in check.stdout


def test_segment_index_drift_is_found_and_repaired(g):
    video = save(g)
    with raw(g.folder) as conn:
        conn.execute("INSERT INTO segments_fts(segments_fts, rowid, caption, alternatives) "
                     "SELECT 'delete', id, caption, alternatives FROM segments WHERE idx = 1")
    assert g.search("dog").items[0]["matched_segments"] == []  # the item's own caption still has it
    assert "segment search index: 1 segment(s) missing from it" in g.integrity_check()
    g.rebuild_search_index()
    assert g.integrity_check() == "ok" and [i["id"] for i in g.search("dog").items] == [video]
    assert [s["idx"] for s in g.search("dog").items[0]["matched_segments"]] == [1]


# ------------------------------------------------------------------ export
def test_export_has_kind_duration_and_segments(g, tmp_path):
    add(g, "a photo", 1)
    video = save(g)
    items = list(g.iter_items())
    assert items[1]["segments"] == g.get(video)["segments"]
    data = json.loads(g.export(tmp_path / "g.json").read_text(encoding="utf-8"))
    assert data == items
    assert data[1]["kind"] == "video" and data[1]["duration"] == 12.0 and len(data[1]["segments"]) == 3
    with open(g.export(tmp_path / "g.csv", fmt="csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["kind"] for r in rows] == ["photo", "video"]
    assert rows[0]["segments"] == "" and rows[0]["duration"] == "" and rows[0]["video_path"] == ""
    assert json.loads(rows[1]["segments"]) == items[1]["segments"]
    assert float(rows[1]["duration"]) == 12.0 and rows[1]["video_path"] == items[1]["video_path"]


# ------------------------------------------------------------------ schema version 3
def make_v2(folder: Path) -> None:
    """Turn a gallery made by this code back into schema version 2 (what 'items.edited_at' made)."""
    downgrade(folder, 2)


def test_version_2_gallery_migrates_to_3(tmp_path):
    folder = tmp_path / "g"
    g = Gallery(folder)
    ids = [add(g, "a dog on the beach", 1), add(g, "a cat on a sofa", 2, "a cat on a couch")]
    g.update_caption(ids[1], "a grey cat")
    later = ("kind", "video_path", "duration", "tags", "confidence", "deleted_at")
    before = [{k: v for k, v in item.items() if k not in later} for item in g.iter_items()]
    g.close()
    make_v2(folder)
    assert user_version(folder) == 2
    with raw(folder) as conn:
        assert [r[1] for r in conn.execute("PRAGMA table_info(items)")][-1] == "edited_at"
    g = Gallery(folder)
    assert g.schema_version == migrations.LATEST == user_version(folder)
    items = list(g.iter_items())
    assert [{k: v for k, v in i.items() if k not in later} for i in items] == before
    assert all((i["kind"], i["video_path"], i["duration"]) == ("photo", None, None) for i in items)
    assert [i["id"] for i in g.search("cat").items] == [ids[1]]
    video = save(g)
    assert [i["id"] for i in g.search("runs").items] == [video] and g.integrity_check() == "ok"
    g.close()
    Gallery(tmp_path / "fresh").close()
    assert schema_of(folder) == schema_of(tmp_path / "fresh")


def test_failed_version_3_migration_changes_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "g"
    g = Gallery(folder)
    add(g, "a dog", 1)
    g.close()
    make_v2(folder)
    v3 = migrations.MIGRATIONS[2].apply

    def fail(db):
        v3(db)
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS[:2], migrations.Migration(3, "x", fail)))
    with pytest.raises(GalleryError, match="simulated"):
        Gallery(folder)
    assert user_version(folder) == 2
    with raw(folder) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'segments%'").fetchone()[0] == 0
    monkeypatch.undo()
    assert Gallery(folder).count() == 1 and user_version(folder) == migrations.LATEST


def test_segments_schema():
    assert [c.name for c in schema.columns_since(3)] == ["kind", "video_file", "duration"]
    assert "segments" in schema.CSV_FIELDS and "segments" not in schema.ITEM_KEYS


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("video, segments, kw, message", [
    (b"", SEGMENTS, {}, "data is empty"),
    ("/no/such/video.mp4", SEGMENTS, {}, "Could not read the video"),
    (12345, SEGMENTS, {}, "expected bytes or a file path"),
    (None, [], {}, "non-empty list of segments"),
    (None, None, {}, "non-empty list of segments"),
    (None, ["x"], {}, "Segment 1 must be a dict"),
    (None, [{"start": 2, "end": 1, "caption": "c"}], {}, "ends .* before it starts"),
    (None, [{"start": "0", "end": 1, "caption": "c"}], {}, "start of segment 1 must be a number"),
    (None, [{"start": 0, "end": float("nan"), "caption": "c"}], {}, "end of segment 1"),
    (None, [{"start": -1, "end": 1, "caption": "c"}], {}, "0 or more"),
    (None, [{"start": 0, "end": True, "caption": "c"}], {}, "end of segment 1"),
    (None, [{"start": 0, "end": 1}], {}, "caption of segment 1 must be text"),
    (None, [{"start": 0, "end": 1, "caption": "c"}, {"start": 1, "end": 2, "caption": "d",
                                                      "candidates": [{"score": 1}]}], {}, "Segment 2: Candidate 1"),
    (None, SEGMENTS, {"poster": b"not an image"}, "Could not read the image"),
    (None, SEGMENTS, {"width": "wide"}, "width"),
    (None, SEGMENTS, {"duration": "long"}, "duration"),
])
def test_bad_input_changes_nothing(g, video, segments, kw, message):
    existing = save(g, 99)
    files = (image_files(g), video_files(g))
    with pytest.raises(GalleryError, match=message):
        g.save_video(fake_video(1) if video is None else video, "bad.mp4", segments, **kw)
    assert g.count() == 1 and (image_files(g), video_files(g)) == files and segment_rows(g) == 3
    assert list(g.videos_dir.glob(".tmp-*")) == []
    assert g.get(existing)["segments"][1]["caption"] == "a dog runs on the grass"


def test_read_only_gallery_refuses_videos(tmp_path):
    folder = tmp_path / "g"
    with Gallery(folder) as g:
        video = save(g)
    with Gallery(folder, read_only=True) as ro:
        with pytest.raises(GalleryError, match="read-only"):
            save(ro, 1)
        assert ro.get(video)["segments"][0]["caption"] == "a man walks on a street"
        assert [i["id"] for i in ro.search("dog").items] == [video]
        assert ro.count() == 1


# ------------------------------------------------------------------ concurrency
def test_threads_save_and_delete_videos_at_once(tmp_path):
    folder = tmp_path / "g"
    Gallery(folder).close()
    errors: list[BaseException] = []
    saved: list[int] = []

    def writer(w: int) -> None:
        try:
            g = Gallery(folder)
            for i in range(15):
                seed = 0 if i % 5 == 0 else w * 100 + i  # every 5th shares one video
                item = g.save_video(fake_video(seed), f"w{w}.mp4",
                                    [{"start": 0, "end": 1, "caption": f"writer{w} clip{i}"},
                                     {"start": 1, "end": 2, "caption": "a shared scene"}])
                if i % 3 == 0:
                    assert g.delete(item)
                else:
                    saved.append(item)
                add(g, f"writer{w} photo{i}", 1000 + i % 4)
            g.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    g = Gallery(folder)
    assert g.count() == len(saved) + 4 * 15
    assert g.search("shared scene").total == len(saved)
    for item_id in saved:
        item = g.get(item_id)
        assert Path(item["video_path"]).is_file() and len(item["segments"]) == 2
    assert g.integrity_check() == "ok" and g.orphan_images() == [] and g.missing_videos() == []
    assert g.empty_trash() == 4 * 5  # each writer trashed every third of its 15 videos
    assert segment_rows(g) == 2 * len(saved) and g.orphan_images() == []


# ------------------------------------------------------------------ a real video, the CLI
def write_video(path: Path, frames: int = 6) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=5)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for n in range(frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (n * 40, 80, 160)))
            frame.pts, frame.time_base = n, Fraction(1, 5)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_a_real_video_file(g, tmp_path):
    source = write_video(tmp_path / "real.mp4")
    item = g.get(g.save_video(source, None, SEGMENTS, duration=1.2))
    assert Path(item["video_path"]).read_bytes() == source.read_bytes()
    assert item["video_path"].endswith(".mp4") and item["original_name"] == "real.mp4"


def test_cli_search_prints_segment_times(g):
    add(g, "a dog on the beach", 1, name="beach.png")
    video = save(g, name="video.mp4")
    g.close()
    out = run("search", "dog", "--gallery", str(g.folder))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"{video}\ta dog runs on the grass\tvideo.mp4 at 00:00:03.200-00:00:07.900" in lines
    assert any(line.endswith("\tbeach.png") for line in lines) and len(lines) == 2
    walks = run("search", "walks", "--gallery", str(g.folder)).stdout.splitlines()
    assert sorted(walks) == [f"{video}\ta man walks on a street\tvideo.mp4 at 00:00:00.000-00:00:03.200",
                             f"{video}\ta man walks on a street\tvideo.mp4 at 00:00:07.900-00:00:12.000"]
    js = [json.loads(line) for line in run("search", "dog", "--json", "--gallery", str(g.folder)).stdout.splitlines()]
    by_kind = {item["kind"]: item for item in js}
    assert by_kind["video"]["matched_segments"][0]["start"] == 3.2
    assert "matched_segments" not in by_kind["photo"]


def test_moved_gallery_finds_its_videos(g, tmp_path):
    video = save(g)
    g.close()
    moved = tmp_path / "elsewhere"
    shutil.copytree(g.folder, moved)
    shutil.rmtree(g.folder)
    with contextlib.closing(Gallery(moved)) as copy:
        assert Path(copy.get(video)["video_path"]).is_relative_to(moved.resolve())
        assert copy.missing_videos() == [] and copy.orphan_images() == []
