"""The careful caption (`captioner.support.careful`, `DecodingConfig.careful_*`): a photo whose caption the model is
unsure of and that names a weakly supported object is searched again with such words lowered hard; that caption
leads, marked `source="careful"`, and the descriptive one follows."""
from __future__ import annotations

import pytest
import torch

from captioner.decoding.candidate import Candidate
from captioner.decoding.config import DecodingConfig
from captioner.support.careful import careful_decode, triggered, weakest_support

NAMES = ["person", "dog", "grass"]


def cand(text: str, score: float) -> Candidate:
    toks = text.split()
    return Candidate(toks, list(range(4, 4 + len(toks))) + [2], score, torch.zeros(len(toks), 1, 1))


def test_weakest_support_reads_only_object_words_with_evidence():
    assert weakest_support("a man and a dog on the grass".split(), [0.9, 0.2, 0.6], NAMES) == pytest.approx(0.2)
    assert weakest_support("a red ball".split(), [0.1, 0.1, 0.1], NAMES) == 1.0  # no object word with evidence
    assert weakest_support("two men".split(), [0.4, 0.9, 0.9], NAMES) == pytest.approx(0.4)  # plurals count


def test_the_trigger_needs_an_unsure_caption_and_a_weak_object_word():
    weak_person = [0.5, 0.99, 0.99]
    unsure, sure = cand("a man sits", -6.0), cand("a man sits", -1.0)  # mean log-prob -1.5 and -0.25
    assert triggered(unsure, weak_person, NAMES, unsure=-1.0, minimum=0.9)
    assert not triggered(sure, weak_person, NAMES, unsure=-1.0, minimum=0.9)  # the model is sure
    assert triggered(sure, weak_person, NAMES, unsure=0.0, minimum=0.9)  # 0: any caption
    assert not triggered(unsure, [0.95, 0.99, 0.99], NAMES, unsure=-1.0, minimum=0.9)  # well supported
    assert not triggered(unsure, weak_person, NAMES, unsure=-1.0, minimum=0.0)  # off


class FakeSupport:
    names = NAMES

    def __init__(self, presence):
        self.rows = torch.tensor(presence)

    def presence(self, features, word_probs):
        return self.rows[features[:, 0].long()]


def test_careful_decode_searches_again_only_the_triggered_photos_and_leads_with_that_caption():
    calls = []

    def decode_fn(features, decoding, word_probs):
        calls.append((features[:, 0].tolist(), decoding.support_penalty, decoding.support_min, decoding.careful_penalty))
        if decoding.support_penalty == 20.0:
            return [[cand("a cup of coffee", -4.0), cand("a table", -5.0)] for _ in features]
        return [[cand("a man sits on a table", -9.0), cand("a dog on a table", -10.0)] for _ in features]

    feats = torch.tensor([[0.0], [1.0]])  # photo 0: weak person evidence; photo 1: a person is surely there
    support = FakeSupport([[0.3, 0.1, 0.1], [0.99, 0.1, 0.1]])
    cfg = DecodingConfig(support_penalty=2.0, support_min=0.3, careful_penalty=20.0, careful_min=0.9,
                         careful_unsure=-1.0)
    out = careful_decode(decode_fn, feats, cfg, support)
    assert calls[0] == ([0.0, 1.0], 2.0, 0.3, 0.0)  # the descriptive search of both, careful settings off
    assert calls[1] == ([0.0], 20.0, 0.9, 0.0)  # the careful search of photo 0 only
    assert [c.caption for c in out[0]] == ["a cup of coffee", "a man sits on a table"]
    assert [c.source for c in out[0]] == ["careful", "generated"]
    assert [c.caption for c in out[1]] == ["a man sits on a table", "a dog on a table"]
    calls.clear()
    off = careful_decode(decode_fn, feats, cfg.replace(careful_penalty=0.0), support)
    assert len(calls) == 1 and [c.caption for c in off[0]] == ["a man sits on a table", "a dog on a table"]


def test_the_captioner_leads_with_the_careful_caption_where_triggered(shipped_captioner):
    cap = shipped_captioner
    torch.manual_seed(0)
    grids = torch.randn(2, 7, 7, 1280).clamp(min=0)  # off the photo manifold: the model is unsure
    cfg = cap.decoding.replace(careful_penalty=20.0, careful_min=1.0, careful_unsure=0.0)  # every object word weak
    plain = cap.decode(grids, cap.decoding)
    out = cap.decode(grids, cfg)
    for p, o in zip(plain, out):
        if o[0].source == "careful":
            assert o[1].ids == p[0].ids  # the descriptive caption follows
        else:  # not triggered: no object word with evidence in the caption
            assert [c.ids for c in o] == [c.ids for c in p]
    assert any(o[0].source == "careful" for o in out)
    assert DecodingConfig().careful_penalty == 0.0
