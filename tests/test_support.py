"""Saying only what is in the photo (issue 23): the support head and penalty that lower object words a
photo does not support, in plain and grounded searches alike, and the rule against echoed words."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from captioner.decoding.config import DecodingConfig
from captioner.decoding.processors import NoEcho, TagBonus
from captioner.errors import ConfigError
from captioner.evaluation.hallucination import concept_of
from captioner.model.vocab import Vocab
from captioner.pipeline import Captioner
from captioner.support.head import SupportHead
from captioner.support.penalty import SupportEvidence

SAMPLES = Path(skdata.__file__).parent
PEOPLE = ("person", "top")


@pytest.fixture(scope="module")
def captioner():
    return Captioner.load()


@pytest.fixture(scope="module")
def grids(captioner):
    photos = ["chelsea.png", "coffee.png", "camera.png"]
    return captioner.encode(torch.stack([captioner.prepare(str(SAMPLES / p)).pixels for p in photos]))


def head_against(names, channels: int, sure: float = -9.0) -> SupportHead:
    """A head that sees none of `names` in any photo."""
    return SupportHead(list(names), np.zeros((len(names), channels), np.float32), np.full(len(names), sure, np.float32))


def test_no_echo_bans_the_last_word_and_x_and_x():
    vocab = Vocab(["<pad>", "<start>", "<end>", "<unk>", "a", "white", "and", "dog", "or"])
    rule = NoEcho(vocab)
    seqs = torch.tensor([[4, 5, 6], [4, 5, 5], [4, 7, 2]])
    out = rule(torch.zeros(3, len(vocab)), seqs, 3)
    assert out[0, 5] == float("-inf") and out[0, 6] == float("-inf")  # "white and" -> no "white", no "and"
    assert out[0, 7] == 0 and out[1, 6] == 0
    assert out[1, 5] == float("-inf")  # the word just said
    assert out[2, 2] == 0  # <end> after <end> stays allowed (finished rows)
    assert torch.equal(rule(torch.zeros(3, len(vocab)), seqs[:, :0], 0), torch.zeros(3, len(vocab)))


def test_the_head_round_trips_through_safetensors(tmp_path):
    head = SupportHead(["person", "dog"], np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.0]),
                       {"made_by": "test"})
    head.save(tmp_path)
    back = SupportHead.load(tmp_path)
    assert back.names == ["person", "dog"] and back.about == {"made_by": "test"}
    assert np.array_equal(back.weight, head.weight) and np.array_equal(back.bias, head.bias)
    p = back.probabilities(torch.ones(1, 2, 2, 3))
    assert p.shape == (1, 2) and float(p[0, 0]) == pytest.approx(1 / (1 + np.exp(-3.5)))
    assert SupportHead.load(tmp_path / "missing") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "support_head.safetensors").write_bytes(b"not a file")
    assert SupportHead.load(tmp_path / "bad") is None


def test_penalty_lowers_only_unsupported_object_words(captioner):
    vocab = captioner.model.vocab
    head = head_against(["person", "dog", "animal"], 1280)
    ev = SupportEvidence(head, captioner.tagger.labels)
    presence = torch.tensor([[0.01, 0.5, 0.01], [0.5, 0.01, 0.01]])
    pen = ev.penalty(presence, vocab, strength=2.0, minimum=0.1)
    assert pen[0, vocab.stoi["man"]] == pytest.approx(-2.0 * np.log(10.0))
    assert pen[0, vocab.stoi["men"]] == pen[0, vocab.stoi["man"]] and pen[0, vocab.stoi["dog"]] == 0
    assert pen[1, vocab.stoi["puppy"]] < 0 and pen[1, vocab.stoi["woman"]] == 0
    assert pen[:, vocab.stoi["animal"]].eq(0).all()  # the general word is the careful way to say it
    assert pen[:, vocab.stoi["red"]].eq(0).all()
    assert ev.penalty(presence, vocab, strength=0.0, minimum=0.1) is None
    assert ev.penalty(torch.full((2, 3), 0.5), vocab, strength=2.0, minimum=0.1) is None


def test_imagenet_evidence_counts_for_the_concept(captioner, grids):
    head = head_against(["dog", "cat", "person"], 1280)
    ev = SupportEvidence(head, captioner.tagger.labels)
    probs = captioner.tagger.word_probabilities(grids)
    p = ev.presence(grids, probs)
    assert float(p[0, 1]) > 0.5  # chelsea is a cat to ImageNet (tabby, tiger cat ...)
    assert float(p[0, 0]) < 0.05 and float(p[0, 2]) < 0.01  # no dog class; no person class, the head says no


@torch.inference_mode()
def model_logprob(captioner, grid, ids) -> float:
    """The model's summed log-probability of `ids` (teacher forcing, no penalty)."""
    dec, vocab = captioner.fast_decoder, captioner.model.vocab
    feats = dec.flatten(grid.unsqueeze(0))
    proj = dec.project(feats)
    h, c = dec.init_state(feats)
    word, total = torch.tensor([vocab.start_id]), 0.0
    for i in ids:
        logp, h, c, _ = dec.step(feats, proj, word, h, c)
        total += float(logp[0, i])
        word = torch.tensor([i])
    return total


def test_penalised_search_avoids_the_words_and_keeps_the_models_score(captioner, grids):
    cfg = captioner.decoding.replace(tag_bonus=0.0, beam_size=3, support_penalty=0.0, no_echo=0)
    plain = captioner.decode(grids, cfg)
    assert any(concept_of(t) in PEOPLE for cands in plain for t in cands[0].tokens)  # the model's Flickr8k habit
    captioner.support_head, captioner._support = head_against(PEOPLE, 1280), None
    try:
        for dec in (cfg.replace(support_penalty=5.0, support_min=0.3), captioner.decoding.replace(support_penalty=5.0)):
            out = captioner.decode(grids, dec)
            for b, cands in enumerate(out):
                assert not any(concept_of(t) in PEOPLE for t in cands[0].tokens), cands[0].tokens
                for c in cands:  # the score is the model's own log-probability, not the penalised one
                    if max(c.ids) < len(captioner.model.vocab):  # (a word added at decode time has no row)
                        assert c.score == pytest.approx(model_logprob(captioner, grids[b], c.ids), abs=1e-3)
        # no penalty: the captions are the plain ones
        assert [c[0].tokens for c in captioner.decode(grids, cfg.replace(support_penalty=0.0))] == \
               [c[0].tokens for c in plain]
    finally:
        captioner.support_head, captioner._support = None, None


def test_tag_bonus_keeps_the_penalty_in_plain_rows_and_after_naming():
    V = 6
    groups = torch.tensor([-1, -1, 0, -1, -1, -1])
    pen = torch.zeros(1, V)
    pen[0, 3] = -4.0
    bonus = pen.clone()
    bonus[0, 2] = 5.0
    steer = TagBonus(bonus, groups, penalty=pen)
    assert steer.steers(0) and torch.equal(steer.plain(), pen)
    out = steer(torch.zeros(1, V), torch.tensor([[2]]), 1, torch.tensor([0]))  # the tag was named
    assert out[0, 2] == 0 and out[0, 3] == -4.0
    only_pen = TagBonus(pen, groups, penalty=pen)
    assert not only_pen.steers(0) and not only_pen.misses(0, [1])


def test_support_settings_are_checked():
    assert DecodingConfig().support_penalty == 0 and DecodingConfig().no_echo == 0
    with pytest.raises(ConfigError):
        DecodingConfig(support_penalty=-1.0)
    with pytest.raises(ConfigError):
        DecodingConfig(no_echo=2)


def test_cover_words_give_the_exact_mass_of_the_everyday_classes(captioner):
    from captioner.support.scene import EVERYDAY_CLASSES, cover_words
    from captioner.tags.classes import class_words

    words_of = class_words()
    words = cover_words(words_of)
    classes = [{i for i, ws in enumerate(words_of) if w in ws} for w in words]
    assert all(cs <= set(EVERYDAY_CLASSES) for cs in classes)  # only everyday classes
    assert sum(len(cs) for cs in classes) == len(set().union(*classes))  # no class counted twice
    assert len(set().union(*classes)) >= 0.95 * len(EVERYDAY_CLASSES)
    assert {760, 963, 967} <= set().union(*classes)  # refrigerator, pizza, espresso (through kitchen, food, coffee)
    assert "dog" not in words and "jersey" not in words and "bicycle" not in words
    tagger = captioner.tagger  # the words' summed probability is the classes' mass
    x = torch.randn(4, 1280)
    wp = tagger.word_probabilities(x)
    cp = tagger.class_probabilities(x)
    idx = [tagger.labels.index(w) for w in words]
    covered = sorted(set().union(*classes))
    assert torch.allclose(wp[:, idx].sum(1), cp[:, covered].sum(1), atol=1e-5)


def test_an_object_scene_lowers_people_not_food_in_torch_and_numpy(captioner, grids, tmp_path):
    from captioner.runtime.numpy_support import NumpySupport
    from captioner.support.scene import cover_words
    from captioner.tags.classes import class_words

    names = ["person", "dog", "car"]
    sure = SupportHead(names, np.zeros((3, 1280), np.float32), np.full(3, 3.0, np.float32))  # sees all, everywhere
    spec = {"words": cover_words(class_words()), "concepts": ["person", "dog"], "strength": 4.0}
    against = SupportHead(names, sure.weight, sure.bias, {"against": spec})
    probs = captioner.tagger.word_probabilities(grids)  # chelsea (a cat), coffee (a cup), camera (a man, a tripod)
    before = SupportEvidence(sure, captioner.tagger.labels).presence(grids, probs)
    after = SupportEvidence(against, captioner.tagger.labels).presence(grids, probs)
    assert float(after[1, 0]) < 0.5 * float(before[1, 0])  # the coffee cup: no person, no dog
    assert float(after[1, 1]) < 0.5 * float(before[1, 1])
    assert torch.equal(after[:, 2], before[:, 2])  # a concept not spoken against
    assert float(after[0, 0]) > 0.8 * float(before[0, 0])  # the cat photo is no object scene
    assert torch.equal(SupportEvidence(against, captioner.tagger.labels).presence(grids),
                       SupportEvidence(sure, captioner.tagger.labels).presence(grids))  # no ImageNet words: unchanged
    against.save(tmp_path)
    back = SupportHead.load(tmp_path)
    assert back.about["against"] == spec
    assert torch.equal(SupportEvidence(back, captioner.tagger.labels).presence(grids, probs), after)
    got = NumpySupport.load(tmp_path, captioner.tagger.labels).presence(grids.numpy(), probs.numpy())
    assert np.allclose(got, after.numpy(), atol=1e-6)  # the torch-free runtime gives the same evidence
