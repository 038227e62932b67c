"""The language-model prior (`captioner.decoding.lm_prior`, `DecodingConfig.lm_weight` / `lm_swap`): a Kneser-Ney
n-gram model whose probabilities sum to 1 for any history, fused into beam search the same way by the PyTorch and
numpy searches; off (weight 0) it changes nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from captioner.decoding import lm_prior
from captioner.decoding.search import beam_search, decode, greedy_decode
from oracles.photos import make_photo, mandelbrot_photo

TEXT = ["a kitchen with a white refrigerator and a stove", "a plate of food on a table",
        "a giraffe standing next to a tree", "a kitchen with a stove and a sink", "a cat sitting on a table",
        "a man riding a skateboard down a street", "a bathroom with a toilet and a sink",
        "a plate with a sandwich and a cup of coffee on a table", "two giraffes standing in a field"]


def _lm_file(path, words, order=3):
    stoi = {w: i for i, w in enumerate(words)}
    sents = [[stoi.get(t, stoi[lm_prior.UNK]) for t in s.split()] for s in TEXT]
    own = [[stoi.get(t, stoi[lm_prior.UNK]) for t in s.split()] for s in ["a dog runs on the grass", "a man in a red shirt"]]
    lm_prior.save(path, words, {"prior": lm_prior.build(sents, words, order),
                                "own": lm_prior.build(own, words, order)})
    return path


@pytest.fixture()
def prior_file(shipped_captioner, tmp_path, monkeypatch):
    path = _lm_file(tmp_path / lm_prior.FILE_NAME, shipped_captioner.model.vocab.itos)
    monkeypatch.setenv("CAPTIONER_LM_PRIOR", str(path))
    return path


@pytest.fixture(scope="module")
def grids(shipped_captioner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-photos")
    photos = [make_photo(folder / f"p{i}.jpg", 200 + 60 * i, 150, seed=i) for i in range(3)]
    photos.append(mandelbrot_photo(folder / "m.jpg"))
    return shipped_captioner.encode(torch.stack([shipped_captioner.prepare(p).pixels for p in photos]))


@pytest.mark.parametrize("order", [2, 3, 4])
def test_probabilities_sum_to_one_over_the_vocabulary(tmp_path, order):
    words = ["<pad>", "<start>", "<end>", "<unk>"] + sorted({w for s in TEXT for w in s.split()} - {"toilet"} | {"the", "dog"})
    _, models = lm_prior.load(_lm_file(tmp_path / "lm.npz", words, order))
    lm = models["prior"]
    stoi = {w: i for i, w in enumerate(words)}
    seqs = np.array([[stoi[w] for w in h.split()] for h in
                     ["a kitchen with", "with a stove", "giraffe standing next", "<unk> <unk> <unk>", "the the the"]])
    for t in range(4):  # histories of 0..3 words, seen and unseen contexts
        p = lm.probs(lm.histories(seqs[:, :t]))
        assert np.allclose(p.sum(1), 1.0, atol=1e-6)
        assert (p[:, [stoi["<pad>"], stoi["<start>"]]] == 0).all() and (p[:, 2:] > 0).all()
    p = lm.probs(lm.histories(seqs[:1]))[0]  # "a kitchen with" -> "a" is the likeliest next word
    assert words[int(p.argmax())] == "a"


def test_weight_zero_changes_nothing_and_reads_no_file(shipped_captioner, grids, monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTIONER_LM_PRIOR", str(tmp_path / "missing.npz"))
    cap = shipped_captioner
    cfg = cap.decoding.replace(beam_size=3)
    assert cfg.lm_weight == 0 and lm_prior.fusion_for(cfg, cap.model.vocab) is None
    _lm_file(tmp_path / "missing.npz", cap.model.vocab.itos)
    plain = cap.decode(grids, cfg)
    assert [[c.ids for c in cs] for cs in cap.decode(grids, cfg.replace(lm_weight=0.0))] == \
        [[c.ids for c in cs] for cs in plain]
    fused = cap.decode(grids, cfg.replace(lm_weight=2.0))  # on, it moves captions toward the text
    assert [cs[0].ids for cs in fused] != [cs[0].ids for cs in plain]


def test_candidates_keep_the_model_score(shipped_captioner, grids, prior_file):
    """With the prior on, a candidate's score is still the model's own log-probability of its words."""
    cap = shipped_captioner
    cfg = cap.decoding.replace(beam_size=3, tag_bonus=0.0, support_penalty=0.0, lm_weight=1.0)
    dec = cap.fast_decoder
    cands = decode(dec, grids, cap.model.vocab, cfg)
    with torch.inference_mode():
        feats = dec.flatten(grids)
        proj = dec.project(feats)
    for b, cs in enumerate(cands):
        with torch.inference_mode():  # teacher-forced: the model's log-probability of the candidate's ids
            h, c = dec.init_state(feats[b: b + 1])
            word, total = torch.tensor([cap.model.vocab.start_id]), 0.0
            for i in cs[0].ids:
                logp, h, c, _ = dec.step(feats[b: b + 1], proj[b: b + 1], word, h, c)
                total += float(logp[0, i])
                word = torch.tensor([i])
        assert abs(total - cs[0].score) < 1e-3


@pytest.mark.parametrize("swap", [0.0, 0.5])
def test_beam_one_is_greedy_with_the_prior(shipped_captioner, grids, prior_file, swap):
    cap = shipped_captioner
    cfg = cap.decoding.replace(beam_size=1, tag_bonus=0.0, support_penalty=0.0, lm_weight=1.0, lm_swap=swap)
    g = greedy_decode(cap.fast_decoder, grids, cap.model.vocab, cfg)
    b = beam_search(cap.fast_decoder, grids, cap.model.vocab, cfg)
    assert [c.ids for c in g] == [cs[0].ids for cs in b]
    assert max(abs(x.score - cs[0].score) for x, cs in zip(g, b)) < 1e-4


@pytest.mark.parametrize("beam", [1, 3])
def test_numpy_search_gives_the_pytorch_captions_with_the_prior(shipped_captioner, grids, prior_file, beam):
    from captioner.runtime.numpy_search import NumpyStepDecoder
    from captioner.runtime.numpy_search import decode as np_decode

    cap = shipped_captioner
    cfg = cap.decoding.replace(beam_size=beam, tag_bonus=0.0, support_penalty=0.0, lm_weight=1.0, lm_swap=0.5)
    ref = cap.decode(grids, cfg)
    assert [cs[0].ids for cs in ref] != [cs[0].ids for cs in cap.decode(grids, cfg.replace(lm_weight=0.0,
                                                                                            lm_swap=0.0))]
    got = np_decode(NumpyStepDecoder(cap.model.folder), grids.numpy(), cap.model.vocab, cfg)
    for r, g in zip(ref, got):
        assert [c.ids for c in g] == [c.ids for c in r]
        assert max(abs(a.score - b.score) for a, b in zip(r, g)) < 1e-4


def test_the_unsure_gate_applies_the_prior_only_to_unsure_photos(shipped_captioner, grids, prior_file):
    cap = shipped_captioner
    cfg = cap.decoding.replace(beam_size=3, lm_weight=2.0, lm_swap=0.5)
    plain = cap.decode(grids, cfg.replace(lm_weight=0.0, lm_swap=0.0))
    fused = cap.decode(grids, cfg)
    scores = [cs[0].normalized_score for cs in plain]
    cut = sorted(scores)[1] + 1e-6  # the two least sure photos take the prior's captions, the others keep theirs
    gated = cap.decode(grids, cfg.replace(lm_unsure=cut))
    want = [(f if s < cut else p)[0].ids for s, p, f in zip(scores, plain, fused)]
    assert [cs[0].ids for cs in gated] == want
    assert want != [cs[0].ids for cs in plain] and want != [cs[0].ids for cs in fused]


def test_the_swap_term_is_finite_and_quiet(shipped_captioner, prior_file):
    """With `lm_swap` both models' -inf (words neither predicts: <pad>, <start>) met in a subtraction; the term
    must be finite in every column and raise no numpy warning (it did on every step)."""
    import warnings

    vocab = shipped_captioner.model.vocab
    words, models = lm_prior.load(prior_file)
    term = lm_prior.Fusion(words, models, vocab.itos, weight=1.0, swap=0.5)
    seqs = np.array([[vocab.stoi["a"], vocab.stoi["dog"]], [vocab.stoi["a"], vocab.stoi["man"]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = term.term(seqs)
    assert out.shape == (2, len(vocab)) and np.isfinite(out).all()
