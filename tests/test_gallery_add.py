"""`captioner gallery add DIR...`: bulk import with features, resumable, bad files reported."""
from __future__ import annotations

import shutil

import pytest

NAMES = ["3356369156_074750c6cc.jpg", "3006217970_90b42e6b27.jpg", "2926786902_815a99a154.jpg"]


@pytest.fixture()
def photo_tree(flickr8k_dir, tmp_path):
    root = tmp_path / "photos"
    (root / "trip" / "day2").mkdir(parents=True)
    shutil.copy(flickr8k_dir / "images" / NAMES[0], root / NAMES[0])
    shutil.copy(flickr8k_dir / "images" / NAMES[1], root / "trip" / NAMES[1])
    shutil.copy(flickr8k_dir / "images" / NAMES[2], root / "trip" / "day2" / NAMES[2])
    shutil.copy(flickr8k_dir / "images" / NAMES[2], root / "trip" / "same-bytes-again.jpg")
    (root / "trip" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not a photo, not looked at")
    return root


def run_cli(argv, capsys):
    from captioner.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_add_stores_photos_with_features_and_resumes(photo_tree, tmp_path, capsys):
    from captioner.storage import Gallery

    gallery = tmp_path / "gallery"
    code, out, err = run_cli(["gallery", "add", str(photo_tree), "--gallery", str(gallery)], capsys)
    assert code == 1  # one bad file
    assert "added 3 photo(s)" in out and "1 already there" in out and "1 could not be added" in out
    bad = [line for line in err.splitlines() if "broken.jpg" in line]
    assert len(bad) == 1 and bad[0].startswith("skipped ") and "corrupt" in bad[0]
    assert bad[0].count("broken.jpg") == 1
    with Gallery(gallery) as g:
        names = sorted(item["original_name"] for item in g.iter_items())
        assert names == sorted(NAMES)
        model = next(g.iter_items())["model_name"]
        assert model and g.ids_without_features(model) == []
        ids, grids = g.features(model_name=model)
        assert len(ids) == 3 and grids.dtype.name == "float16" and grids.shape[1:] == (49, 1280)
        assert all(item["caption"] for item in g.iter_items())

    # a second run adds nothing (content hashes), still reports the bad file
    code, out, err = run_cli(["gallery", "add", str(photo_tree), "--gallery", str(gallery), "--quiet"], capsys)
    assert code == 1
    assert "added 0 photo(s)" in out and "4 already there" in out
    assert sum("broken.jpg" in line for line in err.splitlines()) == 1
    with Gallery(gallery) as g:
        assert g.count() == 3


def test_add_refuses_a_missing_folder(tmp_path, capsys):
    code, out, err = run_cli(["gallery", "add", str(tmp_path / "nowhere"), "--gallery", str(tmp_path / "g")], capsys)
    assert code == 2 and "nowhere" in err and "no such file" in err
    assert not (tmp_path / "g").exists()


def test_import_folders_reports_progress(photo_tree, tmp_path):
    from captioner import Captioner
    from captioner.retrieval import import_folders
    from captioner.storage import Gallery

    seen = []
    with Gallery(tmp_path / "g") as g:
        report = import_folders(g, Captioner.load(), [photo_tree / "trip"], progress=lambda d, n, f: seen.append((d, n)))
    assert seen[-1] == (4, 4) and sorted(d for d, _ in seen) == [1, 2, 3, 4]
    assert len(report.added) == 2 and len(report.failed) == 1 and len(report.skipped) == 1
    assert report.to_dict()["failed"][0]["file"].endswith("broken.jpg")


def test_an_interrupted_import_resumed_stores_every_photo_once(photo_tree, tmp_path):
    from captioner import Captioner
    from captioner.retrieval import import_folders
    from captioner.storage import Gallery

    class Stop(Exception):
        pass

    def stop_after_two(done, total, name):
        if done == 2:
            raise Stop  # as if the user pressed Ctrl-C between two photos

    captioner = Captioner.load()
    with Gallery(tmp_path / "g") as g:
        with pytest.raises(Stop):
            import_folders(g, captioner, [photo_tree], progress=stop_after_two, batch_size=2)
        before = g.count()
        assert 1 <= before < 3
        report = import_folders(g, captioner, [photo_tree], batch_size=2)
        names = sorted(item["original_name"] for item in g.iter_items())
        assert names == sorted(NAMES)  # each photo once: none lost, none twice
        assert len(report.added) == 3 - before and len(report.failed) == 1  # the broken file, reported again
        model = captioner.name
        assert g.ids_without_features(model) == []
        assert len(g.features(model_name=model)[0]) == 3
