"""Caption confidence (issue 13): input warnings for degenerate images, and the calibrated
confidence (src/captioner/weights/confidence.json, fitted by scripts/calibrate_confidence.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skdata  # scikit-image ([test]) ships the sample photos

from captioner.confidence.calibration import (
    FEATURES,
    WARNING_CAP,
    ConfidenceScorer,
    candidate_features,
    isotonic_fit,
)
from captioner.confidence.checks import image_warnings
from captioner.model.folder import DEFAULT_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(skdata.__file__).parent


def screenshot() -> Image.Image:
    img = Image.new("RGB", (1200, 800), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, 1200, 60], fill=(40, 90, 200))
    for y in range(100, 780, 28):
        d.text((40, y), "Settings  Account  Privacy  Notifications  Display  Sound  Battery", fill="black")
        d.rectangle([900, y, 980, y + 18], outline=(120, 120, 120))
    return img


def test_warnings_for_degenerate_inputs():
    assert any(w.startswith("tiny image (1x1 px)") for w in image_warnings(Image.new("RGB", (1, 1))))
    assert any(w.startswith("tiny image (20x400 px)") for w in image_warnings(Image.new("RGB", (20, 400), "red")))
    assert any(w.startswith("blank image") for w in image_warnings(Image.new("RGB", (300, 200), (90, 90, 90))))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 20000, 3), dtype=np.uint8))
    assert any(w.startswith("extreme aspect ratio (20000x100 px") for w in image_warnings(noise))
    assert any("screenshot" in w for w in image_warnings(screenshot()))
    for photo in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png"):
        assert image_warnings(Image.open(SAMPLES / photo)) == [], photo


def test_shipped_model_is_calibrated():
    scorer = ConfidenceScorer.load(DEFAULT_MODEL_DIR)
    assert scorer is not None and scorer.features == FEATURES
    assert "CIDEr" in scorer.about["acceptable"] and 0 < scorer.low < 1


def test_confidence_is_a_probability_monotone_in_the_model_score():
    scorer = ConfidenceScorer.load(DEFAULT_MODEL_DIR)
    i = FEATURES.index("mean_logprob")
    x = np.tile(np.array(scorer.mean), (41, 1))
    x[:, i] = np.linspace(-4.0, -0.2, 41)
    p = scorer.probability(x)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= -1e-12) and p[-1] > p[0]


def test_confidence_of_photos_and_of_degenerate_images(shipped_captioner):
    photo = shipped_captioner.caption(SAMPLES / "motorcycle_left.png")
    assert 0.0 <= photo.confidence <= 1.0
    assert photo.confidence == photo.candidates[0].confidence
    assert all(c.confidence is not None and 0 <= c.confidence <= 1 for c in photo.candidates)
    for img in (Image.new("RGB", (1, 1)), Image.new("RGB", (400, 300), "white")):
        r = shipped_captioner.caption(img)
        assert r.warnings and r.confidence <= WARNING_CAP < photo.confidence
        d = r.to_dict()
        assert d["confidence"] == round(r.confidence, 4) and d["warnings"] == r.warnings
        assert d["candidates"][0]["confidence"] == round(r.candidates[0].confidence, 4)


def test_low_confidence_is_flagged():
    class C:
        def __init__(self, tokens, score):
            self.tokens, self.score, self.ids, self.confidence = tokens, score, tokens + ["<end>"], None
            self.normalized_score = score / len(self.ids)

    class R:
        tags, warnings = [], []

        def __init__(self, cands):
            self.candidates, self.confidence = cands, None

    scorer = ConfidenceScorer.load(DEFAULT_MODEL_DIR)
    bad = R([C(["a", "dog"], -20.0), C(["a", "man"], -2.0)])
    scorer.score(bad)
    assert bad.confidence < scorer.low and bad.warnings[0].startswith("low confidence")
    good = R([C("a dog runs on the grass".split(), -2.0)])
    good.warnings = []
    scorer.score(good)
    assert good.confidence > bad.confidence


def test_isotonic_fit_is_non_decreasing():
    rng = np.random.default_rng(1)
    x = rng.random(500)
    y = (rng.random(500) < x).astype(float)
    kx, ky = isotonic_fit(x, y)
    assert np.all(np.diff(ky) >= 0) and np.all(np.diff(kx) >= 0) and len(kx) <= 20


def test_missing_or_broken_calibration_means_no_confidence(tmp_path):
    assert ConfidenceScorer.load(tmp_path) is None
    (tmp_path / "confidence.json").write_text("{not json")
    assert ConfidenceScorer.load(tmp_path) is None
    (tmp_path / "confidence.json").write_text(json.dumps({"features": ["other"], "mean": [0], "scale": [1],
                                                          "coef": [1], "intercept": 0}))
    assert ConfidenceScorer.load(tmp_path) is None


def test_features_of_a_candidate():
    from captioner.tags import Tag

    class C:
        def __init__(self, tokens, norm):
            self.tokens, self.normalized_score = tokens, norm

    cands = [C("a cat sits on a mat".split(), -1.0), C("a dog".split(), -1.5)]
    f = dict(zip(FEATURES, candidate_features(cands, 0, [Tag("cat", 0.9), Tag("bear", 0.05)])))
    assert f == {"mean_logprob": -1.0, "margin": 0.5, "length": 6.0, "tag_top": 0.9, "tag_named": 0.9,
                 "support_min": 1.0, "support_low": 0.0}  # no support evidence: nothing counts against it
    g = dict(zip(FEATURES, candidate_features(cands, 1, [Tag("cat", 0.9)])))
    assert g["margin"] == -0.5 and g["tag_named"] == 0.0
    # how well the photo supports the objects named: the lowest presence, and how many are under 0.2
    presence = {"cat": 0.9, "dog": 0.05, "person": 0.1}
    h = dict(zip(FEATURES, candidate_features([C("a man and his dog on a mat".split(), -1.0)], 0, [], presence)))
    assert h["support_min"] == 0.05 and h["support_low"] == 2.0
    k = dict(zip(FEATURES, candidate_features(cands, 0, [], presence)))
    assert k["support_min"] == 0.9 and k["support_low"] == 0.0


def test_a_calibration_of_the_first_five_features_still_loads(tmp_path):
    from captioner.confidence.calibration import ALL_FEATURES

    old = ConfidenceScorer([0.0] * 5, [1.0] * 5, [1.0, 0, 0, 0, 0], 0.0, features=ALL_FEATURES[:5])
    old.save(tmp_path)
    back = ConfidenceScorer.load(tmp_path)
    assert back.features == ALL_FEATURES[:5]
    x = np.zeros((1, len(ALL_FEATURES)))
    x[0, 0] = 2.0  # all seven features in, the five it knows used
    assert back.probability(x)[0] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_cli_json_and_text_output(tmp_path):
    photo = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), "white").save(photo)
    cat = SAMPLES / "chelsea.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run([sys.executable, "-m", "captioner", "caption", str(cat), str(photo), "--json", "--beam-size", "1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    assert [t["label"] for t in recs[0]["tags"]][0] == "cat" and 0 <= recs[0]["confidence"] <= 1
    assert recs[1]["warnings"] and recs[1]["confidence"] <= WARNING_CAP
    p = subprocess.run([sys.executable, "-m", "captioner", "caption", str(photo), "--beam-size", "1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "(confidence 0.0" in p.stdout and "LOW" in p.stdout
    assert "warning: " in p.stderr and "tiny image (1x1 px)" in p.stderr
