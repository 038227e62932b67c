"""The `captioner` command: JSON Lines contract, bad input, folders, resume, help."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from PIL import Image


def run(args, env_extra=None, cwd=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "captioner"] + args, capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    (d / "sub").mkdir()
    Image.new("RGB", (300, 200), (200, 40, 40)).save(d / "red.jpg")
    Image.new("RGBA", (64, 64), (0, 0, 255, 128)).save(d / "sub" / "blue.png")
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("not a photo")
    (d / "readme.txt").write_text("ignored: not an image extension")
    return d


def test_json_lines_contract_with_a_bad_file(tiny_model_dir, photos):
    p = run(["caption", str(photos / "red.jpg"), str(photos / "notes.jpg"), str(photos / "missing.jpg"),
             "--json", "--beam-size", "2", "--model", str(tiny_model_dir)])
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert [rec["image"] for rec in lines] == [str(photos / n) for n in ("red.jpg", "notes.jpg", "missing.jpg")]
    good = lines[0]
    assert good["error"] is None and len(good["candidates"]) == 2
    c = good["candidates"][0]
    assert set(c) == {"caption", "tokens", "score", "normalized_score", "confidence", "source"}
    assert c["source"] in ("generated", "bank")
    assert c["caption"] == " ".join(c["tokens"])
    assert {"tags", "confidence", "warnings"} <= set(good) and isinstance(good["tags"], list)
    assert good["candidates"][0]["score"] >= good["candidates"][1]["score"]
    assert "notes.jpg" in lines[1]["error"] and lines[1]["candidates"] == []
    assert "not found" in lines[2]["error"]


def test_folder_to_jsonl_resumes_and_csv(tiny_model_dir, photos, tmp_path):
    out = tmp_path / "caps.jsonl"
    p = run(["caption", str(photos), "--out", str(out), "--batch-size", "2", "--model", str(tiny_model_dir)])
    assert p.returncode == 1  # two bad files in the folder
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 4 and sum(r["error"] is None for r in recs) == 2
    again = run(["caption", str(photos), "--out", str(out), "--model", str(tiny_model_dir)])
    assert "skipping 2" in again.stderr
    assert len(out.read_text().splitlines()) == 6  # only the two failures were retried
    out_csv = tmp_path / "caps.csv"
    run(["caption", str(photos), "--out", str(out_csv), "--model", str(tiny_model_dir)])
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 4 and {r["image"].rsplit("/", 1)[-1] for r in rows if not r["error"]} == {"red.jpg", "blue.png"}


def test_no_model_installed_is_said_clearly(photos, tmp_path):
    p = run(["caption", str(photos / "red.jpg")], {"CAPTIONER_MODEL": str(tmp_path / "none")})
    assert p.returncode == 2 and "No captioning model is installed" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("command", ["caption", "prepare", "train", "evaluate", "studio"])
def test_every_command_has_help(command):
    p = run([command, "--help"])
    assert p.returncode == 0 and "usage: captioner " + command in p.stdout
