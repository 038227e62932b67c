"""`captioner caption` and `captioner find` on the torch-free runtime (`--runtime onnx`, the default): the same
JSON as the PyTorch path (`--runtime torch`), what it lacks taken by PyTorch without a change in output, and the
numpy pieces find runs on (the likelihood scorer, the float16 scans) against their PyTorch originals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data as skdata

from captioner.cli import main

SAMPLES = Path(skdata.__file__).parent
PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lean_photos")
    for name in PHOTOS:
        shutil.copy(SAMPLES / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def cli_json(argv, capsys) -> tuple[int, list[dict]]:
    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr().out
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()]


def assert_same_results(got: list[dict], want: list[dict]) -> None:
    assert [r["image"] for r in got] == [r["image"] for r in want]
    for a, b in zip(got, want):
        assert a["error"] == b["error"]
        assert [c["caption"] for c in a["candidates"]] == [c["caption"] for c in b["candidates"]], a["image"]
        for x, y in zip(a["candidates"], b["candidates"]):
            assert abs(x["score"] - y["score"]) <= 1e-4 and x["source"] == y["source"]
            assert (x["confidence"] is None) == (y["confidence"] is None)
            assert x["confidence"] is None or abs(x["confidence"] - y["confidence"]) <= 1e-3
        # tags with exactly tied probabilities may come out in another order
        assert sorted(t["label"] for t in a["tags"]) == sorted(t["label"] for t in b["tags"])
        assert a["warnings"] == b["warnings"]
        assert (a["confidence"] is None) == (b["confidence"] is None)
        assert a["confidence"] is None or abs(a["confidence"] - b["confidence"]) <= 1e-3


@pytest.mark.parametrize("flags", [[], ["--beam-size", "1"], ["--beam-size", "3", "--tag-bonus", "0"]],
                         ids=["default", "beam1", "beam3-ungrounded"])
def test_caption_cli_onnx_gives_the_torch_json(photo_dir, capsys, monkeypatch, flags):
    from captioner.pipeline import Captioner

    argv = ["caption", str(photo_dir), "--json", "--batch-size", "2", *flags]
    rc_torch, want = cli_json([*argv, "--runtime", "torch"], capsys)
    with monkeypatch.context() as m:  # the default run never reaches the PyTorch captioner
        m.setattr(Captioner, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("took the torch path")))
        rc_onnx, got = cli_json(argv, capsys)
    assert rc_onnx == rc_torch == 1  # broken.jpg
    assert len(got) == len(PHOTOS) + 1 and sum(r["error"] is not None for r in got) == 1
    assert all(r["candidates"] and r["confidence"] is not None for r in got if r["error"] is None)
    assert_same_results(got, want)


def test_caption_cli_text_out_file_and_metadata_on_onnx(photo_dir, tmp_path, capsys):
    photo = tmp_path / "chelsea.png"
    shutil.copy(photo_dir / "chelsea.png", photo)
    capsys.readouterr()
    assert main(["caption", str(photo), "--write-metadata", "sidecar"]) == 0
    text = capsys.readouterr().out.strip()
    assert text and "\t(confidence" in text
    assert (tmp_path / "chelsea.png.xmp").is_file()
    out = tmp_path / "captions.jsonl"
    assert main(["caption", str(photo_dir), "--out", str(out)]) == 1  # broken.jpg
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(PHOTOS) + 1
    assert [r for r in lines if r["image"].endswith("chelsea.png")][0]["candidates"][0]["caption"] == text.split("\t")[0]


def test_what_the_lean_path_lacks_goes_to_torch(tiny_model_dir, photo_dir, capsys):
    """A model folder without its ONNX runtime is captioned by PyTorch, with the output --runtime torch gives."""
    from captioner.cli.caption import torch_reason
    from captioner.cli.main import build_parser
    from captioner.decoding.config import DecodingConfig

    photo = str(photo_dir / "chelsea.png")
    rc, got = cli_json(["caption", photo, "--json", "--model", str(tiny_model_dir)], capsys)
    rc_torch, want = cli_json(["caption", photo, "--json", "--model", str(tiny_model_dir), "--runtime", "torch"],
                              capsys)
    assert rc == rc_torch == 0 and got == want
    args = build_parser().parse_args(["caption", photo])
    assert torch_reason(args) is None
    # ported: the sentence bank, the careful caption and the language-model prior (videos are no reason either)
    assert torch_reason(args, DecodingConfig(bank_shortlist=5)) is None
    assert torch_reason(args, DecodingConfig(careful_penalty=1.0)) is None
    assert torch_reason(args, DecodingConfig(lm_weight=1.0, lm_swap=0.5, lm_unsure=-1.0)) is None
    assert torch_reason(build_parser().parse_args(["caption", photo, "--device", "cuda"])) == "--device cuda"
    assert torch_reason(build_parser().parse_args(["caption", photo, "--runtime", "torch"])) == "--runtime torch"


# ------------------------------------------------------------------ find
def test_numpy_scorer_gives_the_torch_likelihoods(shipped_captioner):
    from captioner.retrieval.likelihood import Scorer, query_tokens
    from captioner.retrieval.numpy_likelihood import NumpyScorer

    grids = np.abs(np.random.default_rng(3).standard_normal((40, 49, 1280))).astype(np.float16) * 0.5
    tokens = query_tokens(shipped_captioner.model.vocab, "a dog runs on the grass with a qwzx")
    ref, lean = Scorer(shipped_captioner.model.decoder), NumpyScorer.load(shipped_captioner.model.folder)
    want = ref.text_likelihood(ref.photos(grids), tokens)
    got = lean.text_likelihood(lean.photos(grids), tokens)
    np.testing.assert_allclose(got, want, atol=1e-5)
    want = ref.text_likelihood(ref.photos(grids), tokens, prune=(2, 7), bias=np.linspace(0, 1, 40))
    got = lean.text_likelihood(lean.photos(grids), tokens, prune=(2, 7), bias=np.linspace(0, 1, 40))
    assert (np.isfinite(got) == np.isfinite(want)).all() and np.isfinite(got).sum() == 7
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], atol=1e-5)


def test_float16_scans_match_without_torch(monkeypatch):
    import sys

    from captioner.retrieval.index import PhotoIndex, half_products

    rng = np.random.default_rng(5)
    pooled = rng.standard_normal((20_000, 64)).astype(np.float32)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    index = PhotoIndex(np.arange(20_000), pooled.astype(np.float16), np.zeros(20_000, np.float32))
    vectors = rng.standard_normal((64, 3)).astype(np.float32)
    with_torch = half_products(index, vectors)
    monkeypatch.delitem(sys.modules, "torch")
    without = half_products(index, vectors)
    assert without.dtype == np.float32 and without.shape == (20_000, 3)
    assert np.abs(without - with_torch).max() <= 2e-3  # one float16 step at most
    assert (np.argsort(-without[:, 0], kind="stable")[:50] == np.argsort(-with_torch[:, 0], kind="stable")[:50]).mean() > 0.9


@pytest.fixture(scope="module")
def find_gallery(photo_dir, shipped_captioner, tmp_path_factory) -> Path:
    """The sample photos imported with features, then one saved without them (find back-fills it)."""
    from captioner.retrieval import import_folders
    from captioner.storage import Gallery

    src = tmp_path_factory.mktemp("lean_find_photos")
    for name in PHOTOS[1:]:
        shutil.copy(photo_dir / name, src / name)
    folder = tmp_path_factory.mktemp("lean_gallery")
    with Gallery(folder) as g:
        report = import_folders(g, shipped_captioner, [src])
        assert len(report.added) == len(PHOTOS) - 1
        data = (photo_dir / PHOTOS[0]).read_bytes()
        g.save(data, PHOTOS[0], shipped_captioner.caption(data).caption)
    return folder


@pytest.mark.parametrize("flags", [[], ["--shortlist", "2", "--shortlist-fulltext", "0"],
                                   ["--shortlist", "3", "--no-first-stage", "--prune-keep", "2",
                                    "--prior-weight", "0.25"]],
                         ids=["default", "first-stage", "no-first-stage-pruned-priors"])
def test_find_cli_onnx_gives_the_torch_ranking(find_gallery, tmp_path, capsys, monkeypatch, flags):
    from captioner.pipeline import Captioner
    from captioner.storage import Gallery

    torch_copy, lean_copy = tmp_path / "t", tmp_path / "l"
    shutil.copytree(find_gallery, torch_copy)
    shutil.copytree(find_gallery, lean_copy)
    query = "a cat lying on a couch"
    _, want = cli_json(["find", query, "--gallery", str(torch_copy), "--json", "--runtime", "torch", *flags], capsys)
    with monkeypatch.context() as m:
        m.setattr(Captioner, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("took the torch path")))
        _, got = cli_json(["find", query, "--gallery", str(lean_copy), "--json", *flags], capsys)
    got, want = got[0], want[0]
    assert got["scored"] == want["scored"] > 0
    assert [m["item_id"] for m in got["matches"]] == [m["item_id"] for m in want["matches"]]
    for a, b in zip(got["matches"], want["matches"]):
        assert abs(a["score"] - b["score"]) <= 1e-4
        assert (a["prior"] is None) == (b["prior"] is None)
        assert a["prior"] is None or abs(a["prior"] - b["prior"]) <= 1e-4
    # the photo saved without features got the same grid from the torch-free encoder
    with Gallery(torch_copy) as t, Gallery(lean_copy) as lean:
        item = [i for i in t.iter_items() if i["original_name"] == PHOTOS[0]][0]["id"]
        _, want_grid = t.features([item], model_name="flickr8k-lite2-sat-scst-soup")
        _, got_grid = lean.features([item], model_name="flickr8k-lite2-sat-scst-soup")
    np.testing.assert_allclose(np.asarray(got_grid, np.float32), np.asarray(want_grid, np.float32), atol=1e-2)


def test_find_like_on_onnx_gives_the_torch_neighbours(find_gallery, capsys):
    from captioner.storage import Gallery

    with Gallery(find_gallery) as g:
        item = next(iter(g.iter_items()))["id"]
    _, want = cli_json(["find", "--like", str(item), "--gallery", str(find_gallery), "--json", "--runtime", "torch"],
                       capsys)
    _, got = cli_json(["find", "--like", str(item), "--gallery", str(find_gallery), "--json"], capsys)
    assert [m["item_id"] for m in got[0]["matches"]] == [m["item_id"] for m in want[0]["matches"]]


# ------------------------------------------------------------------ one loader
def test_a_loaded_model_brings_its_folders_extras(shipped_captioner):
    """`Captioner(load_model(dir))` reads the folder's confidence, new words, tag reliability and support head,
    as `Captioner.from_pretrained(dir)` does; None still leaves one out."""
    from captioner.pipeline import Captioner

    model = shipped_captioner.model
    assert model.folder is not None
    cap = Captioner(model)
    for name in ("scorer", "new_words", "tag_reliability", "support_head"):
        assert getattr(cap, name) is not None, name
        assert type(getattr(cap, name)) is type(getattr(shipped_captioner, name))
    assert cap.caption(SAMPLES / "chelsea.png").confidence == shipped_captioner.caption(SAMPLES / "chelsea.png").confidence
    assert Captioner(model, scorer=None).scorer is None
