"""The `captioner` command imports only what the command it runs uses: `--help` and the gallery commands load
no torch (1.2-1.9 s), no onnx (0.6 s with ml_dtypes), no Gradio and no pandas (which sqlite-utils would
pull in), and `caption --help` not even numpy or Pillow; captioning a photo and finding gallery photos by
description with the shipped model load no torch, no onnx and no Gradio (ONNX Runtime and numpy do the work)
and export nothing (the model folder carries its ONNX runtime). Each command runs in a fresh interpreter."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from oracles.photos import make_photo

HEAVY = ("torch", "onnx", "gradio", "pandas", "ml_dtypes")
LIGHT = ("numpy", "PIL", "onnxruntime")

RUNNER = """
import json, sys
from captioner.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:  # --help
    rc = exc.code
loaded = sorted(m for m in {heavy!r} + {light!r} if m in sys.modules)
print("@@" + json.dumps({{"rc": rc, "loaded": loaded}}), file=sys.stderr)
"""


def run_cli(*args: str, env=None) -> tuple[int, list[str], str]:
    out = subprocess.run([sys.executable, "-c", RUNNER.format(heavy=HEAVY, light=LIGHT), *args], capture_output=True,
                         text=True, timeout=600, env=env)
    line = [x for x in out.stderr.splitlines() if x.startswith("@@")]
    assert line, out.stderr[-3000:]
    report = json.loads(line[-1][2:])
    return report["rc"], [m for m in report["loaded"] if m in HEAVY], out.stdout, report["loaded"]


@pytest.mark.parametrize("args", [["--help"], ["learn", "--help"], ["evaluate", "--help"], ["find", "--help"],
                                  ["studio", "--help"], ["train", "--help"]])
def test_help_imports_nothing_heavy(args):
    rc, loaded, out, _ = run_cli(*args)
    assert rc == 0 and "usage" in out
    assert loaded == [], f"`captioner {' '.join(args)}` imported {loaded}"


def test_gallery_commands_import_nothing_heavy(tmp_path):
    from captioner.storage import Gallery

    Gallery(tmp_path / "g").close()
    rc, loaded, _, _ = run_cli("gallery", "list", "--gallery", str(tmp_path / "g"))
    assert rc == 0
    assert loaded == [], f"`captioner gallery list` imported {loaded}"


def test_caption_help_imports_not_even_numpy_nor_pillow():
    rc, _, out, everything = run_cli("caption", "--help")
    assert rc == 0 and "--runtime" in out
    assert everything == [], f"`captioner caption --help` imported {everything}"


def test_captioning_a_photo_imports_no_torch_onnx_nor_gradio(tmp_path):
    import os

    photo = make_photo(tmp_path / "photo.jpg", 160, 120, seed=1)
    cache = tmp_path / "cache"
    rc, loaded, out, everything = run_cli("caption", str(photo), env=dict(os.environ, CAPTIONER_CACHE_DIR=str(cache)))
    assert rc == 0 and out.strip()
    assert loaded == [], f"`captioner caption photo.jpg` imported {loaded}"
    assert "onnxruntime" in everything  # the torch-free runtime did the work
    assert not list(cache.rglob("*.onnx"))  # the shipped folder's own runtime: nothing exported


def test_finding_gallery_photos_imports_no_torch_onnx_nor_gradio(tmp_path):
    """`captioner find "..."` over a gallery: the likelihood in numpy; the photo saved without features is
    encoded by the folder's ONNX encoder, and the --runtime torch ranking is the same."""
    from captioner.storage import Gallery

    with Gallery(tmp_path / "g") as g:
        for seed, caption in enumerate(["a dog runs on the grass", "a red car on a road", "two people at a table"]):
            photo = make_photo(tmp_path / f"p{seed}.jpg", 160, 120, seed=seed)
            g.save(photo.read_bytes(), photo.name, caption)
    argv = ("find", "a dog on the grass", "--gallery", str(tmp_path / "g"), "--json")
    rc, loaded, out, _ = run_cli(*argv)
    assert rc == 0, out
    assert loaded == [], f"`captioner find` imported {loaded}"
    got = json.loads(out)
    assert got["scored"] == 3 and got["matches"][0]["likelihood"] is not None
    rc, loaded, out, _ = run_cli(*argv, "--runtime", "torch")
    assert rc == 0 and "torch" in loaded
    want = json.loads(out)
    assert [m["item_id"] for m in got["matches"]] == [m["item_id"] for m in want["matches"]]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got["matches"], want["matches"])) <= 1e-4


STUDIO_RUNNER = """
import json, os, sys, threading, time, urllib.request
port, gallery, beam, max_len, photos = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
from captioner.studio.app import launch

heavy = {heavy!r}
loaded = lambda: sorted(m for m in heavy if m in sys.modules)
threading.Thread(target=launch, kwargs=dict(gallery_dir=gallery, port=port, quiet=True), daemon=True).start()
url, deadline = f"http://127.0.0.1:{{port}}/", time.monotonic() + 300
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200 and b"Captioner Studio" in r.read():
                break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
report = {{"first_page": loaded()}}
while any(t.name == "studio-warm-up" for t in threading.enumerate()):  # the engine warmed up too
    time.sleep(0.1)
report["warmed_up"] = loaded()
from gradio_client import Client, handle_file

client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
report["result"] = client.predict([handle_file(p) for p in photos], beam, max_len, api_name="/caption")
report["captioned"] = loaded()
print("@@" + json.dumps(report), flush=True)
os._exit(0)
"""


@pytest.mark.slow
def test_the_studio_starts_and_captions_without_torch_with_the_captions_of_pytorch(tmp_path, shipped_captioner,
                                                                                    flickr8k_dir):
    """`captioner studio` with the shipped model: its first page is served, the engine warmed up and photos
    captioned through its /caption API with no torch, no onnx (nor diffusers) loaded, and the captions are
    PyTorch's `Captioner`'s (scores within 1e-4)."""
    from studio_server import free_port

    photos = sorted((flickr8k_dir / "images").glob("*.jpg"))[:3]
    decoding = shipped_captioner.decoding
    heavy = ("torch", "onnx", "ml_dtypes", "diffusers", "transformers")
    out = subprocess.run([sys.executable, "-c", STUDIO_RUNNER.format(heavy=heavy), str(free_port()),
                          str(tmp_path / "gallery"), str(decoding.beam_size), str(decoding.max_len),
                          *map(str, photos)], capture_output=True, text=True, timeout=600)
    line = [x for x in out.stdout.splitlines() if x.startswith("@@")]
    assert line, (out.stdout + out.stderr)[-3000:]
    report = json.loads(line[-1][2:])
    assert report["first_page"] == [], f"the studio's start imported {report['first_page']}"
    assert report["warmed_up"] == [] and report["captioned"] == [], report
    got = report["result"]["photos"]
    assert [p["name"] for p in got] == [p.name for p in photos] and report["result"]["failed"] == 0
    for photo, mine in zip(photos, got):
        want = shipped_captioner.caption(photo, beam_size=decoding.beam_size, max_len=decoding.max_len)
        best = mine["candidates"][0]
        assert best["caption"] == want.caption, photo.name
        assert abs(best["score"] - want.candidates[0].score) <= 1e-4
        assert len(mine["candidates"]) == len(want.candidates)
