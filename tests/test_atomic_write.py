"""captioner.atomic_write: the old file or the complete new one, never a part; nothing left behind."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from captioner.atomic_write import AtomicFile, atomic_path, write_atomic


def test_write_atomic_creates_and_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    write_atomic(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    write_atomic(target, "é", encoding="latin-1")
    assert target.read_bytes() == b"\xe9"
    assert os.listdir(tmp_path) == ["out.json"]


def test_an_error_leaves_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the writer failed")
    with pytest.raises(RuntimeError), AtomicFile(target, "w") as f:
        f.write("half")
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.pt"]


def test_a_killed_writer_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "subtitles.vtt"
    target.write_text("old\n")
    script = ("import os, sys\nfrom captioner.atomic_write import AtomicFile\n"
              "with AtomicFile(sys.argv[1], 'w') as f:\n    f.write('new ' * 100000)\n    f.flush()\n    os._exit(9)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(target)], timeout=120)
    assert proc.returncode == 9
    assert target.read_text() == "old\n"


def test_libraries_that_write_by_name_keep_their_suffix(tmp_path):
    with atomic_path(tmp_path / "cache.npz", suffix=".tmp.npz") as tmp:
        np.savez(tmp, x=np.arange(3))  # np.savez would add .npz to a name without it
    with np.load(tmp_path / "cache.npz") as data:
        assert data["x"].tolist() == [0, 1, 2]
    with atomic_path(tmp_path / "ck.pt") as tmp:
        torch.save({"w": torch.ones(2)}, str(tmp))
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path)) == ["cache.npz", "ck.pt"]


def test_a_folder_that_cannot_take_the_file_fails_before_writing(tmp_path):
    with pytest.raises(FileNotFoundError):
        AtomicFile(tmp_path / "missing" / "out.srt", "w")
    with pytest.raises(ValueError, match="mode"):
        AtomicFile(tmp_path / "out.srt", "a")
    assert os.listdir(tmp_path) == []


def test_new_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # not a temporary file's 0600


def test_fsync_forces_the_file_and_then_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def record(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    write_atomic(tmp_path / "a", "x")
    assert synced == []
    write_atomic(tmp_path / "a", "y", fsync=True)
    assert synced == [False, True]
    with atomic_path(tmp_path / "b", fsync=True) as tmp:
        tmp.write_text("z")
    assert synced == [False, True, False, True]


def test_racing_writers_each_write_a_whole_file_and_readers_see_only_whole_files(tmp_path):
    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    write_atomic(target, payloads[0])
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            seen.append(target.read_bytes())

    def write(i):
        for _ in range(5):
            write_atomic(target, payloads[i])

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert seen and all(data in payloads for data in seen)
    assert target.read_bytes() in payloads
    assert os.listdir(tmp_path) == ["shared.bin"]


@pytest.mark.parametrize("hard_links", [True, False])
def test_exclusive_never_replaces_a_file_that_is_there(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # a file system without them: the new file is renamed into place instead
        monkeypatch.setattr(os, "link", lambda *_: (_ for _ in ()).throw(PermissionError("no hard links")))
    target = tmp_path / "gallery.db"
    with atomic_path(target, exclusive=True, fsync=True) as tmp:
        tmp.write_bytes(b"first")
    with pytest.raises(FileExistsError), atomic_path(target, exclusive=True) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"first" and os.listdir(tmp_path) == ["gallery.db"]
