"""Object tags (issue 13): the backbone's own ImageNet classifier on the encoder's pooled grid, its
1,000 classes mapped to plain words; tags reach CaptionResult, JSON and video segments."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata  # scikit-image ([test]) ships the sample photos

from captioner.pipeline import Captioner
from captioner.tags import Tag
from captioner.tags.classes import class_table, class_words
from captioner.tags.tagger import ObjectTagger, TagConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(skdata.__file__).parent


def test_class_map_covers_every_class_with_plain_words():
    table = class_table()
    assert [c["index"] for c in table] == list(range(1000))
    assert all(c["words"] and all(w == w.lower().strip() and w for w in c["words"]) for c in table)
    words = class_words()
    assert words[281][-1] == "cat" and "tabby" in table[281]["name"]  # tabby, tabby cat -> cat
    assert "pizza" in words[963] and table[963]["name"].startswith("pizza")
    assert all("dog" in words[i] for i in range(151, 269))  # every breed keeps its name plus "dog"
    assert "golden retriever" in words[207] and "dog" in words[207]
    assert all("cat" in words[i] for i in range(281, 286))
    assert "broccoli" in words[937] and "banana" in words[954] and "zebra" in words[340]


def test_class_map_file_is_what_the_script_builds():
    p = subprocess.run([sys.executable, "scripts/build_tag_map.py", "--check"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_grid_mean_is_the_classifiers_global_average_pooling(shipped_captioner):
    """The encoder keeps the trunk's native 7x7 map, so the tagger's grid mean is exactly the
    avg-pooling the classifier was trained on: the full EfficientNet gives the same logits."""
    from efficientnet_lite_pytorch import EfficientNet

    from captioner.model.backbones import _lite2_file, _load_state_dict

    net = EfficientNet.from_name("efficientnet-lite2", image_size=None)
    net.load_state_dict(_load_state_dict(_lite2_file()))
    net.eval()
    img = Image.open(SAMPLES / "chelsea.png").convert("RGB")
    x = shipped_captioner.prepare(img).pixels.unsqueeze(0)
    with torch.inference_mode():
        full = torch.softmax(net(x), -1)
        grid = shipped_captioner.model.encoder(x)
    ours = shipped_captioner.tagger.class_probabilities(grid)
    assert torch.allclose(ours, full, atol=1e-4)


@pytest.mark.parametrize("photo, word", [("chelsea.png", "cat"), ("coffee.png", "coffee"),
                                         ("motorcycle_left.png", "scooter")])
def test_tags_of_a_known_photo_name_its_object(shipped_captioner, photo, word):
    r = shipped_captioner.caption(SAMPLES / photo, beam_size=1)
    labels = [t.label for t in r.tags]
    assert word in labels, labels
    assert all(0.0 < t.score <= 1.0 for t in r.tags)
    assert [t.score for t in r.tags] == sorted((t.score for t in r.tags), reverse=True)
    d = r.to_dict()
    assert {"label": word, "score": round(next(t.score for t in r.tags if t.label == word), 4)} in d["tags"]
    json.dumps(d)


def test_tag_threshold_and_merging_by_word():
    words = [[f"w{i % 3}"] for i in range(1000)]  # three words, each shared by a third of the classes
    weight, bias = torch.zeros(1000, 4), torch.zeros(1000)
    bias[0] = 5.0  # class 0 (word w0) stands out
    tagger = ObjectTagger(weight, bias, words, TagConfig(threshold=0.3, top_k=3))
    [tags] = tagger.tags(torch.zeros(1, 2, 2, 4))
    probs = tagger.class_probabilities(torch.zeros(1, 4))[0]
    w0 = float(probs[0::3].sum())
    assert tags[0].label == "w0" and isinstance(tags[0], Tag)
    assert tags[0].score == pytest.approx(w0, abs=1e-5)
    assert all(t.score >= 0.3 for t in tags)
    assert tagger.tags(torch.zeros(1, 4), TagConfig(threshold=1.0))[0] == []
    assert tagger.tags(torch.zeros(1, 4), TagConfig(top_k=0))[0] == []


def test_backbone_without_a_classifier_gives_no_tags(shipped_captioner, monkeypatch):
    from captioner.model import backbones

    spec = backbones.get_backbone("efficientnet-lite2")
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet-lite2", type(spec)(**{**spec.__dict__, "classifier": None}))
    assert ObjectTagger.for_backbone("efficientnet-lite2") is None
    cap = Captioner(shipped_captioner.model, scorer=shipped_captioner.scorer)
    r = cap.caption(SAMPLES / "chelsea.png", beam_size=1)
    assert r.tags == [] and r.caption


def test_keep_features_returns_the_grid(shipped_captioner):
    r = shipped_captioner.caption(SAMPLES / "coffee.png", beam_size=1, keep_features=True)
    assert r.features.dtype == np.float16 and r.features.shape == (49, 1280)
    grid = shipped_captioner.encode(shipped_captioner.prepare(str(SAMPLES / "coffee.png")).pixels.unsqueeze(0))
    assert np.allclose(r.features, grid.reshape(49, 1280).numpy(), atol=2e-2, rtol=1e-2)
    assert "features" not in r.to_dict()
    assert shipped_captioner.caption(SAMPLES / "coffee.png", beam_size=1).features is None


def test_batched_results_equal_one_by_one(shipped_captioner):
    photos = [SAMPLES / f for f in ("chelsea.png", "coffee.png", "rocket.jpg")] + [Image.new("RGB", (1, 1))]
    batched = list(shipped_captioner.caption_many(photos, beam_size=3, batch_size=4))
    for photo, b in zip(photos, batched):
        one = shipped_captioner.caption(photo, beam_size=3)
        assert one.caption == b.caption
        assert [t.label for t in one.tags] == [t.label for t in b.tags]
        assert [t.score for t in one.tags] == pytest.approx([t.score for t in b.tags], abs=1e-5)
        assert (one.confidence is None) == (b.confidence is None)
        if one.confidence is not None:
            assert one.confidence == pytest.approx(b.confidence, abs=1e-5)
        assert one.warnings == b.warnings
