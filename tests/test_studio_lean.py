"""The studio on the torch-free runtime, in-process: `open_studio` loads the shipped model as a `LeanCaptioner`
(PyTorch with --runtime torch, or for a folder without its ONNX runtime), the Caption tab's candidates carry
per-word attention that the player draws as it draws PyTorch's, the gallery finds saved photos by meaning with
it, a learned model the Models tab switches to loads on the same runtime, and what only PyTorch does gets
PyTorch's twin of the same folder. That the studio's start imports no torch is checked in a fresh process by
tests/test_startup_imports.py."""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest

from captioner.runtime.choice import is_lean
from oracles.photos import FLICKR

FLICKR_IMAGES = FLICKR / "images"
needs_flickr = pytest.mark.skipif(not FLICKR_IMAGES.is_dir(), reason="needs the Flickr8k photos")


def studio_of(model, gallery: Path, **kw):
    from captioner.studio.app import open_studio

    studio = open_studio(model, gallery, **kw)
    studio.upload_dir = None  # the photos here are test files, not uploads
    return studio


@pytest.fixture(scope="module")
def lean_studio(tmp_path_factory):
    return studio_of(None, tmp_path_factory.mktemp("lean") / "gallery")


def test_the_studio_runs_on_the_chosen_runtime(lean_studio, tiny_model_dir, tmp_path):
    from captioner.runtime.lean import LeanCaptioner

    assert isinstance(lean_studio.captioner, LeanCaptioner)
    assert (lean_studio.engines.runtime, lean_studio.engines.device) == ("onnx", "cpu")
    assert lean_studio.learning.picker.load == lean_studio.engines.load
    torch_studio = studio_of(None, tmp_path / "g1", runtime="torch")
    assert not is_lean(torch_studio.captioner) and torch_studio.model_name == lean_studio.model_name
    # a folder without its ONNX runtime (the tiny test model) falls back to PyTorch by itself
    assert not is_lean(studio_of(tiny_model_dir, tmp_path / "g2").captioner)


@needs_flickr
def test_caption_tab_attention_and_captions_match_pytorch(lean_studio, shipped_captioner, tmp_path):
    """The player's data from the torch-free studio: the same candidates as PyTorch's studio, each word with
    its attention map, drawn at the same levels (at most one step apart where float rounding differs)."""
    from captioner.storage import Gallery
    from captioner.studio.app import Studio

    torch_studio = Studio(shipped_captioner, Gallery(tmp_path / "g"))
    torch_studio.upload_dir = None
    photos = [str(p) for p in sorted(FLICKR_IMAGES.glob("*.jpg"))[3:5]]
    views = []
    for studio in (lean_studio, torch_studio):
        result, state = studio.photos.caption(photos, 3, 20)
        assert result["captioned"] == 2
        views.append(studio.photos.show_results(state)[1])
        for entry in state["photos"]:  # the session keeps maps of their own, not views of the search's arrays
            for cand in entry["candidates"]:
                assert getattr(cand.attention, "base", None) is None
    for mine, theirs in zip(views[0]["photos"], views[1]["photos"]):
        assert [c["caption"] for c in mine["candidates"]] == [c["caption"] for c in theirs["candidates"]]
        for a, b in zip(mine["candidates"], theirs["candidates"]):
            att, ref = a["attention"], b["attention"]
            assert att is not None and (att["words"], att["n"], att["m"]) == (ref["words"], ref["n"], ref["m"])
            assert att["words"] == len(a["words"]) > 0
            levels = [np.frombuffer(base64.b64decode(x["levels"]), np.uint8).astype(int) for x in (att, ref)]
            assert np.abs(levels[0] - levels[1]).max() <= 1


@needs_flickr
def test_save_and_find_by_meaning_without_torch_scoring(lean_studio):
    """Saved from the Caption tab, found by meaning: the likelihood is numpy's (`NumpyScorer`)."""
    from captioner.retrieval.index import scorer_for
    from captioner.retrieval.numpy_likelihood import NumpyScorer

    photo = sorted(FLICKR_IMAGES.glob("*.jpg"))[5]
    result, state = lean_studio.photos.caption([str(photo)], 3, 20)
    saved = lean_studio.photos.save(0, 0, "", state)
    assert saved["id"] is not None, saved
    found = lean_studio.library._find_by_meaning(result["photos"][0]["candidates"][0]["caption"])
    assert [it["id"] for it in found["items"]][:1] == [saved["id"]]
    assert isinstance(scorer_for(lean_studio.captioner), NumpyScorer)


def test_a_learned_model_loads_on_the_studio_runtime(lean_studio, tmp_path):
    """The Models tab's switch: a learned folder that carries its ONNX runtime loads torch-free in a torch-free
    studio (and on PyTorch in a --runtime torch one)."""
    from captioner.runtime.lean import model_dir
    from captioner.storage import Gallery

    gallery = tmp_path / "gallery"
    Gallery(gallery).close()
    shutil.copytree(model_dir(None), gallery / "models" / "mine", ignore=shutil.ignore_patterns("__*", "*.png"))
    lean = studio_of(None, gallery)
    message = lean.learning.use_model("mine")[0]
    assert "now captions with" in message and is_lean(lean.captioner)
    assert lean.captioner is not lean.learning.picker.started
    on_torch = studio_of(None, gallery, runtime="torch")
    on_torch.learning.use_model("mine")
    assert not is_lean(on_torch.captioner) and on_torch.captioner is not on_torch.learning.picker.started


def test_what_only_pytorch_does_gets_the_same_folder_on_pytorch(lean_studio):
    from captioner.studio.engines import torch_twin, video_engine

    twin = torch_twin(lean_studio.captioner)
    assert not is_lean(twin) and twin.model.folder == lean_studio.captioner.folder
    assert torch_twin(lean_studio.captioner) is twin  # loaded once
    assert torch_twin(twin) is twin
    assert callable(video_engine(lean_studio.captioner).caption_video)


def test_the_video_tab_captions_on_the_torch_free_runtime_like_pytorch(lean_studio, shipped_captioner, tmp_path):
    """A video in the torch-free studio: captioned by `LeanCaptioner.caption_video` itself (no PyTorch twin),
    with PyTorch's segments and captions."""
    from captioner.studio.engines import video_engine
    from test_studio_video import FPS, Progress, two_photos, write_video

    clip = write_video(tmp_path / "two shots.mp4", [p for p in two_photos() for _ in range(2 * FPS)])
    assert video_engine(lean_studio.captioner) is lean_studio.captioner
    result, state = lean_studio.video.caption(str(clip), 3, 20, progress=Progress())
    want = shipped_captioner.caption_video(clip, beam_size=3, max_len=20, name=clip.name)
    assert result["error"] is None and want.error is None and len(want.segments) == 2
    assert [(s["start"], s["end"], s["caption"]) for s in result["segments"]] == \
        [(round(s.start, 3), round(s.end, 3), s.caption) for s in want.segments]
