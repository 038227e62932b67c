"""Beam search and greedy decoding: properties that must hold for any model."""
from __future__ import annotations

import pytest
import torch

from captioner.decoding.config import DecodingConfig
from captioner.decoding.search import beam_search, greedy_decode
from captioner.model.decoder import Decoder
from captioner.model.vocab import Vocab

WORDS = ["a", "dog", "cat", "runs", "on", "grass", "red", "ball", "man", "sits", "in", "water"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(3)
    vocab = Vocab(["<pad>", "<start>", "<end>", "<unk>"] + WORDS)
    dec = Decoder(len(vocab), 24, embed_dim=16, hidden_dim=32, attention_dim=16, dropout=0.0).double().eval()
    with torch.no_grad():  # make <unk> and <pad> tempting so the ban is really tested, and <end> reachable
        dec.out.bias[vocab.unk_id] += 2.0
        dec.out.bias[vocab.pad_id] += 1.0
        dec.out.bias[vocab.end_id] += 1.0
    feats = torch.randn(5, 3, 3, 24, dtype=torch.float64)
    return dec, vocab, feats


def teacher_forced_score(dec, vocab, feats, ids):
    caps = torch.tensor([[vocab.start_id] + ids])
    logp, _ = dec(feats.unsqueeze(0), caps, torch.tensor([len(ids) + 1]))
    return logp[0, torch.arange(len(ids)), torch.tensor(ids)].sum().item()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_beam_candidates_are_distinct_sorted_and_clean(setup, k):
    dec, vocab, feats = setup
    for cands in beam_search(dec, feats, vocab, DecodingConfig(beam_size=k, max_len=12)):
        assert len(cands) == k
        assert len({tuple(c.ids) for c in cands}) == k
        scores = [c.score for c in cands]
        assert scores == sorted(scores, reverse=True)
        for c in cands:
            assert not {"<unk>", "<pad>", "<start>", "<end>"} & set(c.tokens)
            assert vocab.unk_id not in c.ids and vocab.pad_id not in c.ids and vocab.start_id not in c.ids
            assert len(c.tokens) >= 1


def test_scores_equal_teacher_forced_log_probabilities(setup):
    dec, vocab, feats = setup
    for b, cands in enumerate(beam_search(dec, feats, vocab, DecodingConfig(beam_size=4, max_len=12))):
        for c in cands:
            assert c.score == pytest.approx(teacher_forced_score(dec, vocab, feats[b], c.ids), abs=1e-9)
            assert c.normalized_score == pytest.approx(c.score / len(c.ids))


def test_beam_one_equals_greedy(setup):
    dec, vocab, feats = setup
    greedy = greedy_decode(dec, feats, vocab, DecodingConfig(max_len=12))
    beam = beam_search(dec, feats, vocab, DecodingConfig(beam_size=1, max_len=12))
    for g, b in zip(greedy, beam):
        assert g.ids == b[0].ids
        assert g.score == pytest.approx(b[0].score, abs=1e-9)


def test_attention_maps_have_one_grid_per_word_and_sum_to_one(setup):
    dec, vocab, feats = setup
    for cands in beam_search(dec, feats, vocab, DecodingConfig(beam_size=3, max_len=12)):
        for c in cands:
            assert c.attention.shape == (len(c.tokens), 3, 3)
            assert torch.allclose(c.attention.sum(dim=(1, 2)), torch.ones(len(c.tokens), dtype=c.attention.dtype))


def test_batched_decoding_equals_one_by_one(setup):
    dec, vocab, feats = setup
    batched = beam_search(dec, feats, vocab, DecodingConfig(beam_size=3, max_len=12))
    for b in range(feats.shape[0]):
        single = beam_search(dec, feats[b : b + 1], vocab, DecodingConfig(beam_size=3, max_len=12))[0]
        assert [c.ids for c in single] == [c.ids for c in batched[b]]
        assert [c.score for c in single] == pytest.approx([c.score for c in batched[b]], abs=1e-9)


def test_a_beam_that_never_ends_still_yields_a_caption(setup):
    dec, vocab, feats = setup
    with torch.no_grad():
        saved = dec.out.bias[vocab.end_id].item()
        dec.out.bias[vocab.end_id] = -1e4  # <end> practically impossible
        try:
            for cands in beam_search(dec, feats, vocab, DecodingConfig(beam_size=3, max_len=6)):
                assert len(cands) == 3
                assert all(len(c.tokens) == 6 and vocab.end_id not in c.ids for c in cands)
            for g in greedy_decode(dec, feats, vocab, DecodingConfig(max_len=6)):
                assert len(g.tokens) == 6
        finally:
            dec.out.bias[vocab.end_id] = saved


def test_length_penalty_reorders_by_normalised_score(setup):
    dec, vocab, feats = setup
    for cands in beam_search(dec, feats, vocab, DecodingConfig(beam_size=4, max_len=12, length_penalty=1.0)):
        norm = [c.normalized_score for c in cands]
        assert norm == sorted(norm, reverse=True)


def test_inference_decoder_computes_the_same_steps_and_captions(setup):
    """The fused, transposed decoder used by the pipeline is the same function as `Decoder`."""
    from captioner.runtime.fused_decoder import InferenceDecoder

    dec, vocab, feats = setup
    fast = InferenceDecoder(dec)
    f = dec.flatten(feats)
    proj = dec.project(f)
    h, c = dec.init_state(f)
    words = torch.tensor([vocab.start_id, 5, 6, 7, 8])
    with torch.no_grad():
        for a, b in zip(dec.step(f, proj, words, h, c), fast.step(f, proj, words, h, c)):
            assert torch.allclose(a, b, atol=1e-12)
    slow = beam_search(dec, feats, vocab, DecodingConfig(beam_size=3, max_len=12))
    quick = beam_search(fast, feats, vocab, DecodingConfig(beam_size=3, max_len=12))
    for s, q in zip(slow, quick):
        assert [c.ids for c in s] == [c.ids for c in q]
        assert [c.score for c in s] == pytest.approx([c.score for c in q], abs=1e-9)
    assert [g.ids for g in greedy_decode(dec, feats, vocab, DecodingConfig(max_len=12))] == [g.ids for g in greedy_decode(fast, feats, vocab, DecodingConfig(max_len=12))]


def _ngrams(ids, n):
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def test_no_repeat_ngram_blocks_repeats_and_keeps_beam_one_equal_to_greedy(setup):
    dec, vocab, feats = setup
    with torch.no_grad():
        saved = dec.out.bias[vocab.end_id].item()
        dec.out.bias[vocab.end_id] = -1e4  # long captions: without the block, repeats are certain
        try:
            plain = [c for cands in beam_search(dec, feats, vocab, DecodingConfig(beam_size=3, max_len=20)) for c in cands]
            assert any(len(set(_ngrams(c.ids, 2))) < len(_ngrams(c.ids, 2)) for c in plain)
            for n in (2, 3):
                blocked = beam_search(dec, feats, vocab, DecodingConfig(beam_size=3, max_len=20, no_repeat_ngram=n))
                for b, cands in enumerate(blocked):
                    for c in cands:
                        grams = _ngrams(c.ids, n)
                        assert len(set(grams)) == len(grams), c.tokens
                        # the score is still the model's own log-probability of the caption
                        assert c.score == pytest.approx(teacher_forced_score(dec, vocab, feats[b], c.ids), abs=1e-9)
                greedy = greedy_decode(dec, feats, vocab, DecodingConfig(max_len=20, no_repeat_ngram=n))
                beam1 = beam_search(dec, feats, vocab, DecodingConfig(beam_size=1, max_len=20, no_repeat_ngram=n))
                for g, b1 in zip(greedy, beam1):
                    assert len(set(_ngrams(g.ids, n))) == len(_ngrams(g.ids, n))
                    assert g.ids == b1[0].ids
        finally:
            dec.out.bias[vocab.end_id] = saved
