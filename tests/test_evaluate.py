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
