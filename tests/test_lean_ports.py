"""What the torch-free runtime (`captioner.runtime.lean.LeanCaptioner`) took over from the PyTorch path: videos, the
careful caption and the language-model prior (ungated and gated by confidence). Each gives the PyTorch path's
result (the same candidates, word for word, scores within 1e-4, the same tags, confidence and warnings) on
Flickr8k photos and on a clip made of them, and `captioner caption clip.mp4` imports no torch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from oracles.photos import ROOT, real_photos

N_PHOTOS = 8


@pytest.fixture(scope="module")
def lean():
    from captioner.runtime.lean import LeanCaptioner

    return LeanCaptioner()


@pytest.fixture(scope="module")
def photos(flickr8k_dir) -> list[Path]:
    paths = real_photos(N_PHOTOS, flickr8k_dir / "images")
    assert len(paths) == N_PHOTOS
    return paths


def assert_same_candidates(got, want) -> None:
    """Two lists of candidates: the same words and sources in the same order, scores within 1e-4."""
    assert [(c.ids, c.source) for c in got] == [(c.ids, c.source) for c in want]
    assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(got, want))


def assert_same_results(got, want) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.error == b.error
        assert_same_candidates(a.candidates, b.candidates)
        assert sorted(t.label for t in a.tags) == sorted(t.label for t in b.tags)
        assert a.warnings == b.warnings
        assert (a.confidence is None) == (b.confidence is None)
        assert a.confidence is None or abs(a.confidence - b.confidence) < 1e-3


# ------------------------------------------------------------------ the careful caption
@pytest.mark.parametrize("beam", [1, 5])
def test_the_careful_caption_without_torch(shipped_captioner, lean, photos, beam):
    from captioner.runtime.lean import needs_torch

    changes = dict(careful_penalty=20.0, careful_min=0.9, careful_unsure=0.0, beam_size=beam)
    assert needs_torch(lean.decoding_for(**changes)) is None
    want = list(shipped_captioner.caption_many(photos, batch_size=4, **changes))
    got = list(lean.caption_many(photos, batch_size=4, **changes))
    assert_same_results(got, want)
    assert any(r.candidates[0].source == "careful" for r in got)  # the careful search ran for some photos


# ------------------------------------------------------------------ the language-model prior
@pytest.fixture()
def lm_file(shipped_captioner, tmp_path, monkeypatch) -> Path:
    """The prior built by scripts/build_lm_prior.py when this checkout has it, else a small one."""
    from captioner.decoding import lm_prior

    path = ROOT / "runs" / "lm-prior" / lm_prior.FILE_NAME
    if not path.is_file():
        from test_lm_prior import _lm_file

        path = _lm_file(tmp_path / lm_prior.FILE_NAME, shipped_captioner.model.vocab.itos)
    monkeypatch.setenv("CAPTIONER_LM_PRIOR", str(path))
    return path


@pytest.mark.parametrize("beam", [1, 5])
def test_the_language_model_prior_without_torch(shipped_captioner, lean, photos, lm_file, beam):
    """The prior at every step, and gated by confidence (`lm_unsure`: only the photos whose caption without it
    is among the less sure ones are searched again with it)."""
    plain = list(shipped_captioner.caption_many(photos, batch_size=4, beam_size=beam))
    fused_cfg = dict(beam_size=beam, lm_weight=1.0, lm_swap=0.5)
    want = list(shipped_captioner.caption_many(photos, batch_size=4, **fused_cfg))
    assert [r.candidates[0].ids for r in want] != [r.candidates[0].ids for r in plain]  # the prior changes some
    assert_same_results(list(lean.caption_many(photos, batch_size=4, **fused_cfg)), want)

    scores = sorted(r.candidates[0].normalized_score for r in plain)
    gated_cfg = dict(fused_cfg, lm_unsure=(scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2)
    want = list(shipped_captioner.caption_many(photos, batch_size=4, **gated_cfg))
    assert_same_results(list(lean.caption_many(photos, batch_size=4, **gated_cfg)), want)


# ------------------------------------------------------------------ videos
@pytest.fixture(scope="module")
def clip(photos, tmp_path_factory) -> Path:
    """Three Flickr8k photos, 2 s each at 10 fps, 320x240, lossless H.264 (frames equal to the photos)."""
    from PIL import Image

    from test_video import write_video

    frames = [Image.open(p).convert("RGB").resize((320, 240)) for p in photos[:3]]
    return write_video(tmp_path_factory.mktemp("lean_video") / "three.mp4", [f for f in frames for _ in range(20)],
                       fps=10)


def test_caption_video_without_torch(shipped_captioner, lean, clip):
    want = shipped_captioner.caption_video(clip, frame_size=64)
    got = lean.caption_video(clip, frame_size=64)
    assert want.error is None and got.error is None
    assert len(want.cuts) == 2 and len(want.segments) >= 2
    assert (got.video, got.duration, got.cuts) == (want.video, want.duration, want.cuts)
    assert [(s.start, s.end, s.frame_time) for s in got.segments] == [(s.start, s.end, s.frame_time)
                                                                      for s in want.segments]
    for a, b in zip(got.segments, want.segments):
        assert_same_candidates(a.candidates, b.candidates)
        assert sorted(t.label for t in a.tags) == sorted(t.label for t in b.tags)
        assert a.warnings == b.warnings and abs(a.confidence - b.confidence) < 1e-3
        assert a.frame.size == b.frame.size


def test_captioning_a_video_imports_no_torch(shipped_captioner, clip):
    """`captioner caption clip.mp4 --json` in a fresh process: the PyTorch path's records, without torch, onnx
    or Gradio."""
    from test_startup_imports import run_cli

    rc, loaded, out, everything = run_cli("caption", str(clip), "--json")
    assert rc == 0
    assert loaded == [], f"`captioner caption clip.mp4` imported {loaded}"
    assert "onnxruntime" in everything
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    want = shipped_captioner.caption_video(clip).records()
    assert [(r["start"], r["end"], r["caption"], r["segment"], r["segments"]) for r in got] == \
        [(r["start"], r["end"], r["caption"], r["segment"], r["segments"]) for r in want]
    for a, b in zip(got, want):
        assert [c["tokens"] for c in a["candidates"]] == [c["tokens"] for c in b["candidates"]]
        assert all(abs(x["score"] - y["score"]) <= 1e-4 for x, y in zip(a["candidates"], b["candidates"]))


# ------------------------------------------------------------------ the sentence bank
@pytest.fixture(scope="module")
def banked_folder(shipped_captioner, photos, flickr8k_dir, tmp_path_factory) -> Path:
    """The shipped model folder with a sentence bank: scripts/build_sentence_bank.py's (COCO and Flickr30k
    captions) when this checkout has it, else one of Flickr8k training captions."""
    import shutil

    from captioner.bank.store import BANK_FILE

    folder = tmp_path_factory.mktemp("banked") / "model"
    shutil.copytree(shipped_captioner.model.folder, folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = ROOT / "runs" / "bank" / BANK_FILE
    if built.is_file():
        shutil.copy(built, folder / BANK_FILE)
        return folder
    import torch

    from captioner.bank.build import bank_tokens
    from captioner.bank.scoring import SentenceScorer, sentence_likelihood
    from captioner.bank.store import BankData, save_bank

    cap = shipped_captioner
    train = set((flickr8k_dir / "Flickr_8k.trainImages.txt").read_text().split())
    lines = (flickr8k_dir / "Flickr8k.token.txt").read_text().splitlines()
    captions = [x.split("\t", 1)[1] for x in lines if "\t" in x and x.split("#")[0] in train][:5000]
    tokens, source = bank_tokens(cap.model.vocab, [(0, captions)])
    grids = cap.encode(torch.stack([cap.prepare(p).pixels for p in photos]))
    mean_grid = grids.mean(0).reshape(-1, grids.shape[-1]).numpy()
    prior = sentence_likelihood(SentenceScorer(cap.model.decoder), mean_grid, tokens)
    save_bank(folder / BANK_FILE, BankData(tokens, source, prior, mean_grid, ("flickr8k-train",), cap.cfg.name,
                                           len(cap.model.vocab)))
    return folder


@pytest.fixture(scope="module")
def banked(banked_folder):
    from captioner.pipeline import Captioner
    from captioner.runtime.lean import LeanCaptioner

    return Captioner.from_pretrained(banked_folder), LeanCaptioner(banked_folder)


BANK_SETTINGS = [dict(bank_shortlist=25, bank_prior=0.5, bank_evidence=2.0, bank_margin=-0.5, bank_support=1.0),
                 dict(bank_shortlist=40, bank_prior=1.0, bank_margin=0.0, bank_unsure=-0.84, beam_size=3)]


@pytest.mark.parametrize("changes", BANK_SETTINGS, ids=["support", "unsure"])
def test_the_sentence_bank_without_torch(banked, photos, changes):
    ref, lean = banked
    assert lean.bank is not None and len(lean.bank) == len(ref.bank.for_model(ref.model))
    want = list(ref.caption_many(photos, batch_size=4, **changes))
    got = list(lean.caption_many(photos, batch_size=4, **changes))
    assert_same_results(got, want)
    assert any(r.candidates[0].source == "bank" for r in want)  # the bank's sentence leads for some photos
    for a, b in zip(got, want):
        assert a.candidates[0].attention.shape == tuple(b.candidates[0].attention.shape)


def test_the_bank_shortlist_and_likelihood_agree_on_both_kinds_of_array(banked, photos):
    """The first stage (equal scores: the earlier sentence first on both) and the batched likelihood."""
    import numpy as np
    import torch

    from captioner.bank.scoring import sentence_likelihood

    ref, lean = banked
    torch_bank, numpy_bank = ref.bank.for_model(ref.model), lean.bank
    np.testing.assert_allclose(numpy_bank.vectors, torch_bank.vectors.numpy(), atol=1e-6)
    grids = ref.encode(torch.stack([ref.prepare(p).pixels for p in photos[:4]]))
    (ti, tv), (ni, nv) = torch_bank.shortlist(grids, 50), numpy_bank.shortlist(grids.numpy(), 50)
    assert np.array_equal(ni, ti.numpy()) and np.allclose(nv, tv.numpy(), atol=1e-6)
    rows = torch_bank.tokens[ti[0]]
    want = sentence_likelihood(torch_bank.scorer(ref.model.decoder), grids[0], rows)
    got = sentence_likelihood(lean.likelihood, grids[0].numpy(), rows.numpy())
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_captioning_with_the_bank_imports_no_torch(banked, banked_folder, photos):
    from test_startup_imports import run_cli

    ref, _ = banked
    flags = ["--bank-shortlist", "25", "--bank-margin", "-0.5", "--bank-support", "1.0"]
    rc, loaded, out, _ = run_cli("caption", *map(str, photos[:4]), "--json", "--model", str(banked_folder), *flags)
    assert rc == 0 and loaded == [], f"captioning with the sentence bank imported {loaded}"
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    want = list(ref.caption_many(photos[:4], bank_shortlist=25, bank_margin=-0.5, bank_support=1.0))
    assert [[c["tokens"] for c in r["candidates"]] for r in got] == [[c.tokens for c in r.candidates] for r in want]
    assert [[c["source"] for c in r["candidates"]] for r in got] == [[c.source for c in r.candidates] for r in want]


# ------------------------------------------------------------------ equal scores in the search
def test_torch_topk_keeps_the_earlier_of_equal_values():
    """The PyTorch path's top-k orders equal values as the numpy one does (the earlier first): torch.topk alone
    orders them as it likes."""
    import numpy as np
    import torch

    from captioner.decoding.array_ops import NUMPY
    from captioner.decoding.torch_arrays import TORCH

    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, n = int(rng.integers(1, 20)), int(rng.integers(1, 3000))
        x = np.round(rng.normal(size=(rows, n)), int(rng.integers(0, 3))).astype(np.float32)  # many ties
        x[rng.random((rows, n)) < 0.3] = -np.inf
        k = min(int(rng.integers(1, 25)), n)
        values, idx = TORCH.topk(torch.from_numpy(x), k)
        want_values, want_idx = NUMPY.topk(x, k)
        assert np.array_equal(idx.numpy(), want_idx) and np.array_equal(values.numpy(), want_values)


@pytest.mark.parametrize("photo", ["3591462960_86045906bd.jpg", "799486353_f665d7b0f0.jpg"])
def test_equal_scores_in_the_beam_search_are_ordered_alike(shipped_captioner, lean, flickr8k_dir, photo):
    """Beam 10 with grounding: a new word is exactly as likely as its proxy (`cello` and `guitar`; two beams that
    then share a state tie on every word), and with one slot left both paths keep the same one."""
    path = flickr8k_dir / "images" / photo
    want = shipped_captioner.caption(path, beam_size=10)
    got = lean.caption(path, beam_size=10)
    assert_same_candidates(got.candidates, want.candidates)
