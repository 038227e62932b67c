"""Self-critical sequence training: the CIDEr-D reward is the COCO tools' CIDEr, sampling obeys
the decoding rules, and REINFORCE with the mean-of-samples baseline raises the reward."""
from __future__ import annotations

import random

import pytest
import torch

from captioner.decoding.config import DecodingConfig
from captioner.decoding.search import greedy_decode
from captioner.evaluation.cider import CiderD
from captioner.model.decoder import Decoder
from captioner.model.vocab import Vocab
from captioner.training.scst import rewards, sample_captions, scst_loss

WORDS = ["a", "dog", "cat", "runs", "on", "grass", "red", "ball", "man", "sits", "in", "water", "the", "jumps"]


def test_cider_d_equals_the_coco_tools():
    from pycocoevalcap.cider.cider import Cider

    rng = random.Random(0)
    refs = {f"im{i}": [[rng.choice(WORDS) for _ in range(rng.randint(3, 9))] for _ in range(5)] for i in range(30)}
    hyps = {k: [rng.choice(WORDS) for _ in range(rng.randint(1, 9))] for k in refs}
    hyps["im0"] = list(refs["im0"][0])  # one exact match
    mine = CiderD(refs.values()).corpus_score(hyps, refs)
    coco, _ = Cider().compute_score({k: [" ".join(r) for r in v] for k, v in refs.items()},
                                    {k: [" ".join(h)] for k, h in hyps.items()})
    assert mine == pytest.approx(coco, rel=1e-9)
    assert mine > 0


def test_cider_d_prefers_the_right_caption():
    refs = {"a": [["a", "dog", "runs", "on", "grass"]] * 5, "b": [["a", "man", "sits", "in", "water"]] * 5}
    scorer = CiderD(refs.values())
    assert scorer.score(["a", "dog", "runs", "on", "grass"], refs["a"]) > 5
    assert scorer.score(["a", "man", "sits", "in", "water"], refs["a"]) < 0.5
    assert scorer.score([], refs["a"]) == 0


@pytest.fixture
def tiny():
    # one thread: tiny tensors gain nothing from two, and OpenMP spin-waiting makes the test take
    # minutes instead of seconds when another process is busy on the CPU
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<start>", "<end>", "<unk>"] + WORDS)
    dec = Decoder(len(vocab), 8, embed_dim=16, hidden_dim=32, attention_dim=16, dropout=0.0)
    with torch.no_grad():
        dec.out.bias[vocab.unk_id] += 2.0  # tempting, so the ban is really tested
    yield vocab, dec
    torch.set_num_threads(before)


def test_samples_obey_the_decoding_rules(tiny):
    vocab, dec = tiny
    feats = torch.randn(4, 4, 8)
    ids, logps, mask = sample_captions(dec, feats, vocab, n=6, max_len=10)
    assert ids.shape == logps.shape == mask.shape and ids.shape[0] == 24
    assert not torch.isin(ids, torch.tensor([vocab.pad_id, vocab.start_id, vocab.unk_id])).any()
    assert (ids[:, 0] != vocab.end_id).all()
    for row, m in zip(ids.tolist(), mask.tolist()):
        n = row.index(vocab.end_id) + 1 if vocab.end_id in row else len(row)
        assert m == [1.0] * n + [0.0] * (len(row) - n)  # words after <end> do not count
    assert torch.isfinite(logps[mask.bool()]).all() and (logps <= 0).all()
    assert logps.requires_grad


def test_scst_raises_the_reward_of_greedy_captions(tiny):
    vocab, dec = tiny
    torch.manual_seed(1)
    targets = {"i0": "a dog runs on grass", "i1": "a man sits in water", "i2": "the cat jumps", "i3": "a red ball"}
    refs = {k: [v.split()] * 5 for k, v in targets.items()}
    scorer = CiderD(refs.values())
    image_ids = list(targets)
    feats = torch.randn(len(image_ids), 4, 8) * 2

    def greedy_reward():
        with torch.no_grad():
            caps = greedy_decode(dec, feats, vocab, DecodingConfig(max_len=8))
        return sum(scorer.score(c.tokens, refs[i]) for c, i in zip(caps, image_ids)) / len(image_ids)

    before = greedy_reward()
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    n = 8
    for _ in range(200):
        ids, logps, mask = sample_captions(dec, feats, vocab, n, 8)
        r = rewards(scorer, vocab, ids, image_ids, refs).view(len(image_ids), n)
        advantage = (r - (r.sum(1, keepdim=True) - r) / (n - 1)).flatten()
        loss = scst_loss(logps, mask, advantage)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = greedy_reward()
    assert before < 1.0
    assert after > 3.0, (before, after)  # CIDEr-D (x10 scale): 10 is a perfect match
