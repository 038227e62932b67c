"""Words the vocabulary lacks (issue 13): generated only for photos confidently tagged with them, from
their proxies' log-probabilities, as a decode-time view (the model folder and its vocabulary unchanged)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from skimage import data as skdata  # scikit-image ([test]) ships the sample photos

from captioner.model.folder import default_model_dir
from captioner.pipeline import Captioner
from captioner.tags.classes import class_words
from captioner.tags.new_words import NEW_WORDS_FILE, ExtendedStepDecoder, NewWords, extend_vocab

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(skdata.__file__).parent


@pytest.fixture(scope="module")
def grids(shipped_captioner):
    photos = ["chelsea.png", "coffee.png", "camera.png", "motorcycle_left.png"]
    return shipped_captioner.encode(torch.stack([shipped_captioner.prepare(str(SAMPLES / p)).pixels for p in photos]))


def test_the_shipped_table_is_current_and_lists_only_new_tag_words(shipped_captioner):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_new_words.py"), "--check"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stdout + done.stderr
    new = shipped_captioner.new_words
    assert new is not None and {"zebra", "broccoli", "banana", "sink", "clock"} <= set(new.words)
    labels = {w for ws in class_words() for w in ws}
    vocab = shipped_captioner.model.vocab
    for word, proxies in zip(new.words, new.proxies):
        assert word in labels and word not in vocab.stoi
        assert all(p in vocab.stoi for p in proxies)
    assert new.usable(vocab) == new


def test_a_missing_or_broken_table_means_no_new_words(tmp_path):
    assert NewWords.load(tmp_path) is None
    (tmp_path / NEW_WORDS_FILE).write_text("{not json")
    assert NewWords.load(tmp_path) is None
    (tmp_path / NEW_WORDS_FILE).write_text(json.dumps({"words": [{"word": "zebra", "proxies": []}]}))
    assert NewWords.load(tmp_path) is None
    assert NewWords.load(default_model_dir()) is not None


@torch.inference_mode()
def test_a_new_word_is_as_likely_as_its_likeliest_proxy_and_feeds_back_as_its_first(shipped_captioner, grids):
    vocab, dec = shipped_captioner.model.vocab, shipped_captioner.fast_decoder
    new = NewWords(("zebra", "broccoli"), (("animal", "dog", "horse"), ("food",)))
    ext_vocab = extend_vocab(vocab, new)
    assert len(ext_vocab) == len(vocab) + 2 and ext_vocab.itos[len(vocab)] == "zebra"
    assert ext_vocab.itos[: len(vocab)] == vocab.itos
    ext = ExtendedStepDecoder(dec, vocab, new)
    feats = dec.flatten(grids[:1])
    proj = dec.project(feats)
    h, c = dec.init_state(feats)
    logp, h1, c1, _ = ext.step(feats, proj, torch.tensor([vocab.start_id]), h, c)
    assert logp.shape == (1, len(vocab) + 2)
    proxies = [vocab.stoi[w] for w in ("animal", "dog", "horse")]
    assert logp[0, len(vocab)] == logp[0, proxies].max() and logp[0, len(vocab) + 1] == logp[0, vocab.stoi["food"]]
    after_new, _, _, _ = ext.step(feats, proj, torch.tensor([len(vocab)]), h1, c1)  # "zebra" was emitted
    after_proxy, _, _, _ = ext.step(feats, proj, torch.tensor([vocab.stoi["animal"]]), h1, c1)
    assert torch.equal(after_new, after_proxy)


@torch.inference_mode()
def test_only_the_active_new_words_are_computed_the_others_are_never_generated(shipped_captioner, grids):
    vocab, dec = shipped_captioner.model.vocab, shipped_captioner.fast_decoder
    new = NewWords(("zebra", "broccoli", "owl"), (("animal", "dog", "horse"), ("food",), ("bird",)))
    every = ExtendedStepDecoder(dec, vocab, new)
    only = ExtendedStepDecoder(dec, vocab, new, active=[1])  # a batch tagged with broccoli only
    feats = dec.flatten(grids[:1].expand(2, -1, -1, -1))
    proj = dec.project(feats)
    h, c = dec.init_state(feats)
    words = torch.tensor([vocab.start_id, vocab.stoi["an"]])
    full, _, _, _ = every.step(feats, proj, words, h, c)
    part, _, _, _ = only.step(feats, proj, words, h, c)
    V = len(vocab)
    assert torch.equal(part[:, : V + 2], torch.cat([full[:, :V], torch.full((2, 1), float("-inf")), full[:, V + 1 : V + 2]], 1))
    assert bool((part[:, V + 2] == float("-inf")).all())  # owl: not active
    assert part[1, V + 1] == float("-inf")  # "an broccoli": the article rule holds for the active words too


def test_photos_without_a_new_word_tag_decode_as_without_new_words(shipped_captioner, grids):
    cfg = shipped_captioner.decoding.replace(tag_bonus=8.0, tag_min=0.5)
    probs = shipped_captioner.tagger.word_probabilities(grids).clone()
    new_labels = [shipped_captioner.tagger.labels.index(w) for w in shipped_captioner.new_words.words]
    probs[:, new_labels] = 0.0  # e.g. coffee.png's `espresso` tag
    with_new = shipped_captioner.decode(grids, cfg, probs)
    bare = Captioner(shipped_captioner.model, new_words=None, tag_reliability=shipped_captioner.tag_reliability,
                     support_head=shipped_captioner.support_head)  # the same decoding, only the new words left out
    without = bare.decode(grids, cfg, probs)
    assert [c[0].tokens for c in with_new] == [c[0].tokens for c in without]
    vocab = set(shipped_captioner.model.vocab.itos)
    assert all(t in vocab for cands in with_new for c in cands for t in c.tokens)
    off = shipped_captioner.decode(grids, shipped_captioner.decoding.replace(tag_bonus=0.0))  # grounding off: no new words
    assert all(t in vocab for cands in off for c in cands for t in c.tokens)


def test_a_confident_new_word_tag_is_named_once(shipped_captioner, grids):
    labels = shipped_captioner.tagger.labels
    probs = torch.zeros(2, len(labels))
    probs[0, labels.index("zebra")] = 0.9  # a made-up tag on the cat photo
    probs[1, labels.index("zebra")] = 0.3  # below tag_min: not generated
    cfg = shipped_captioner.decoding.replace(tag_bonus=20.0, tag_min=0.5)
    out = shipped_captioner.decode(grids[:2], cfg, probs)
    assert "zebra" in out[0][0].tokens and "zebra" in out[0][0].caption
    assert all(c.tokens.count("zebra") <= 1 for c in out[0])
    assert all("zebra" not in c.tokens for c in out[1])
    result = shipped_captioner.caption(SAMPLES / "coffee.png", tag_bonus=8.0)
    assert result.to_dict()["candidates"][0]["caption"] == result.caption  # JSON-ready with any new word


@torch.inference_mode()
def test_a_new_word_never_follows_the_wrong_article(shipped_captioner, grids):
    vocab, dec = shipped_captioner.model.vocab, shipped_captioner.fast_decoder
    new = NewWords(("zebra", "owl"), (("animal", "dog"), ("bird",)))
    ext = ExtendedStepDecoder(dec, vocab, new)
    feats = dec.flatten(grids[:1].expand(3, -1, -1, -1))
    proj = dec.project(feats)
    h, c = dec.init_state(feats)
    words = torch.tensor([vocab.stoi["a"], vocab.stoi["an"], vocab.stoi["the"]])
    logp, _, _, _ = ext.step(feats, proj, words, h, c)
    V = len(vocab)
    assert logp[0, V] > float("-inf") and logp[0, V + 1] == float("-inf")  # a zebra, not a owl
    assert logp[1, V] == float("-inf") and logp[1, V + 1] > float("-inf")  # an owl, not an zebra
    assert bool(torch.isfinite(logp[2, V:]).all())  # the zebra, the owl
