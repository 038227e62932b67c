"""Metrics match values computed by hand."""
from __future__ import annotations

import math

import pytest

from captioner.evaluation.metrics import java_available, score_captions


def test_bleu1_with_brevity_penalty_matches_hand_computation():
    s = score_captions({"a": "the cat sat"}, {"a": ["the cat sat on the mat"]}, use_java=False)
    # every unigram matches (precision 1); brevity penalty exp(1 - 6/3)
    assert s["bleu1"] == pytest.approx(100 * math.exp(1 - 6 / 3), abs=0.01)


def test_identical_captions_score_perfectly():
    refs = {"a": ["a dog runs on the grass"], "b": ["a man rides a red bike"]}
    s = score_captions({k: v[0] for k, v in refs.items()}, refs, use_java=False)
    for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"):
        assert s[k] == pytest.approx(100, abs=0.01)
    assert s["meteor"] is None and "meteor" in s["missing"][0]


def test_unrelated_captions_score_low():
    refs = {"a": ["a dog runs on the grass"], "b": ["a man rides a red bike"]}
    s = score_captions({"a": "blue sky", "b": "two birds"}, refs, use_java=False)
    assert s["bleu1"] == pytest.approx(0, abs=1e-9) and s["cider"] == 0 and s["rouge_l"] == 0


def test_rouge_l_hand_computed():
    # LCS("the cat sat", "the cat sat on the mat") = 3; P = 1, R = 0.5, beta = 1.2
    s = score_captions({"a": "the cat sat"}, {"a": ["the cat sat on the mat"]}, metrics=("rouge_l",), use_java=False)
    p, r, beta = 1.0, 0.5, 1.2
    assert s["rouge_l"] == pytest.approx(100 * (1 + beta**2) * p * r / (r + beta**2 * p), abs=0.01)


@pytest.mark.skipif(not java_available(), reason="METEOR and the PTB tokenizer need Java")
def test_meteor_with_java():
    refs = {"a": ["a dog runs on the grass ."], "b": ["a man rides a red bike ."]}
    s = score_captions({"a": "a dog runs on the grass", "b": "a man rides a red bike"}, refs)
    assert s["meteor"] > 95 and s["bleu4"] == pytest.approx(100, abs=0.01) and not s["missing"]


def test_cached_evaluation_honours_grounded_decoding(tmp_path):
    """`captioner evaluate --cache` decodes with the tagger like the image path does (`--tag-bonus`)."""
    from pathlib import Path

    from PIL import Image
    from skimage import data as skdata  # scikit-image ([test]) ships the sample photos

    from captioner import cli
    from captioner.evaluation.run import evaluate_model

    photos = ["chelsea.png", "coffee.png", "motorcycle_left.png"]
    (tmp_path / "images").mkdir()
    for p in photos:
        Image.open(Path(skdata.__file__).parent / p).convert("RGB").save(tmp_path / "images" / p.replace("png", "jpg"))
    names = [p.replace("png", "jpg") for p in photos]
    (tmp_path / "Flickr8k.token.txt").write_text("".join(f"{n}#0\ta cat sits on a table .\n" for n in names))
    for fn in ("Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"):
        (tmp_path / fn).write_text("\n".join(names) + "\n")
    cache = tmp_path / "cache"
    assert cli.main(["prepare", "--data", str(tmp_path), "--cache", str(cache), "--backbone", "efficientnet-lite2",
                     "--input-size", "224", "--grid", "7"]) == 0
    run = dict(model_dir=None, data=str(tmp_path), split="test", use_java=False)
    off = evaluate_model(**run, cache_dir=str(cache), tag_bonus=0.0)["predictions"]
    cached = evaluate_model(**run, cache_dir=str(cache))["predictions"]  # the shipped decoding grounds
    from_images = evaluate_model(**run)["predictions"]
    assert "cat" not in off["chelsea.jpg"].split() and "cat" in cached["chelsea.jpg"].split()
    assert cached == from_images
