"""The `captioner` command imports only what the command it runs uses: `--help` and the gallery commands load
no torch (1.2-1.9 s), no onnx (0.6 s with ml_dtypes), no Gradio and no pandas (which sqlite-utils would
pull in); captioning a photo with the shipped model loads neither onnx nor Gradio and exports or hashes
nothing (the model folder carries its ONNX runtime). Each command runs in a fresh interpreter."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from oracles.photos import make_photo

HEAVY = ("torch", "onnx", "gradio", "pandas", "ml_dtypes")

RUNNER = """
import json, sys
from captioner.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:  # --help
    rc = exc.code
loaded = sorted(m for m in {heavy!r} if m in sys.modules)
print("@@" + json.dumps({{"rc": rc, "loaded": loaded}}), file=sys.stderr)
"""


def run_cli(*args: str, env=None) -> tuple[int, list[str], str]:
    out = subprocess.run([sys.executable, "-c", RUNNER.format(heavy=HEAVY), *args], capture_output=True,
                         text=True, timeout=600, env=env)
    line = [x for x in out.stderr.splitlines() if x.startswith("@@")]
    assert line, out.stderr[-3000:]
    report = json.loads(line[-1][2:])
    return report["rc"], report["loaded"], out.stdout


@pytest.mark.parametrize("args", [["--help"], ["learn", "--help"], ["evaluate", "--help"], ["find", "--help"],
                                  ["studio", "--help"], ["train", "--help"]])
def test_help_imports_nothing_heavy(args):
    rc, loaded, out = run_cli(*args)
    assert rc == 0 and "usage" in out
    assert loaded == [], f"`captioner {' '.join(args)}` imported {loaded}"


def test_gallery_commands_import_nothing_heavy(tmp_path):
    from captioner.storage import Gallery

    Gallery(tmp_path / "g").close()
    rc, loaded, _ = run_cli("gallery", "list", "--gallery", str(tmp_path / "g"))
    assert rc == 0
    assert loaded == [], f"`captioner gallery list` imported {loaded}"


def test_captioning_with_the_shipped_model_imports_no_onnx_nor_gradio(tmp_path):
    import os

    photo = make_photo(tmp_path / "photo.jpg", 160, 120, seed=1)
    cache = tmp_path / "cache"
    rc, loaded, out = run_cli("caption", str(photo), env=dict(os.environ, CAPTIONER_CACHE_DIR=str(cache)))
    assert rc == 0 and out.strip()
    assert not {"onnx", "ml_dtypes", "gradio", "pandas"} & set(loaded), loaded
    assert not list(cache.rglob("*.onnx"))  # the shipped folder's own runtime: nothing exported
