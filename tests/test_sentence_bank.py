"""The sentence bank (issue 28): building, storing, batched likelihood, shortlist, the choice, and the
pipeline's `source` field."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from captioner.bank.build import bank_tokens, read_corpus, sayable
from captioner.bank.runtime import BankSource, SentenceBank, load_for, mean_deficit, with_bank
from captioner.bank.scoring import SentenceScorer, sentence_likelihood
from captioner.bank.store import BANK_FILE, BankData, load_bank, save_bank
from captioner.decoding.candidate import Candidate
from captioner.model.folder import load_model
from captioner.retrieval.first_stage import FILE_NAME, QueryProjection, bag_of_words, save_projection
from captioner.retrieval.likelihood import Scorer, query_tokens

SENTENCES = ["A dog runs on the grass.", "a cat sits on the red ball", "A man runs", "a dog runs on the grass",
             "a zebra runs on the grass", "a blue ball on the grass", "the man sits on the blue ball"]


@pytest.fixture()
def banked_model(tiny_model_dir, tmp_path):
    """The tiny model folder with a first-stage projection and a bank of the sayable SENTENCES."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    model = load_model(folder)
    rng = np.random.default_rng(0)
    channels = model.decoder.init_h.weight.shape[1]
    save_projection(folder / FILE_NAME, QueryProjection(rng.normal(size=(len(model.vocab), 4)).astype(np.float32),
                                                        rng.normal(size=(4, channels)).astype(np.float32),
                                                        model.cfg.name))
    tokens, source = bank_tokens(model.vocab, [(0, SENTENCES)], min_words=3, max_words=8)
    grid = rng.normal(size=(4, channels)).astype(np.float32)
    prior = sentence_likelihood(SentenceScorer(model.decoder), grid, tokens)
    save_bank(folder / BANK_FILE, BankData(tokens, source, prior, grid, ("test",), model.cfg.name, len(model.vocab)))
    return folder, model


def test_only_sayable_sentences_enter_once(tiny_model_dir, tmp_path):
    vocab = load_model(tiny_model_dir).vocab
    assert sayable(vocab, "a zebra runs on the grass") is None           # a word the decoder lacks
    assert sayable(vocab, "a dog", min_words=3) is None                   # too short
    assert sayable(vocab, "A dog runs.", min_words=3) == [vocab.stoi[w] for w in ("a", "dog", "runs")]
    tokens, source = bank_tokens(vocab, [(0, SENTENCES[:4]), (1, SENTENCES[3:])], min_words=3, max_words=8)
    rows = [" ".join(vocab.itos[t] for t in row if t) for row in tokens]
    assert rows == ["a dog runs on the grass", "a cat sits on the red ball", "a man runs",
                    "a blue ball on the grass", "the man sits on the blue ball"]
    assert source.tolist() == [0, 0, 0, 1, 1] and tokens.dtype == np.int16 and tokens.shape[1] == 8
    tsv = tmp_path / "c.tsv"
    tsv.write_text("image_id\tcaption\n1\tA dog runs.\n2\ta cat\n")
    assert read_corpus(tsv) == ["A dog runs.", "a cat"]


def test_batched_likelihood_is_the_scorers_teacher_forcing(tiny_model_dir):
    model = load_model(tiny_model_dir)
    grid = torch.randn(4, model.decoder.init_h.weight.shape[1])
    texts = ["a dog runs on the grass", "a man sits", "the red ball"]
    rows = np.zeros((3, 6), np.int64)
    for i, t in enumerate(texts):
        ids = model.vocab.encode(t)[1:-1]
        rows[i, : len(ids)] = ids
    got = sentence_likelihood(SentenceScorer(model.decoder), grid, rows)
    scorer = Scorer(model.decoder)
    photos = scorer.photos(grid[None])
    want = [scorer.text_likelihood(photos, query_tokens(model.vocab, t))[0] for t in texts]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    pruned = sentence_likelihood(SentenceScorer(model.decoder), grid, rows, prune=(1, 2))
    assert np.isinf(pruned).sum() == 1 and np.allclose(pruned[np.isfinite(pruned)], np.asarray(want)[np.isfinite(pruned)],
                                                          atol=1e-5)
    _, maps = sentence_likelihood(SentenceScorer(model.decoder), grid, rows[:1], attention=True)
    assert maps.shape == (1, 6, 4) and torch.allclose(maps[0].sum(dim=1), torch.ones(6), atol=1e-5)


def test_store_round_trip_and_refusals(banked_model, tmp_path):
    folder, model = banked_model
    bank = load_bank(folder / BANK_FILE, vocab_size=len(model.vocab), model_name=model.cfg.name)
    assert bank is not None and len(bank) == 5 and bank.words(2, model.vocab) == ["a", "man", "runs"]
    assert load_bank(folder / BANK_FILE, vocab_size=len(model.vocab) + 1) is None
    assert load_bank(folder / BANK_FILE, model_name="another-model") is None
    assert load_bank(tmp_path / "missing.safetensors") is None
    (tmp_path / "bad.safetensors").write_bytes(b"not a bank")
    assert load_bank(tmp_path / "bad.safetensors") is None


def test_shortlist_is_the_first_stage_ranking(banked_model):
    folder, model = banked_model
    bank = load_for(folder, model)
    projection = bank.projection
    for i in range(len(bank)):
        row = bank.data.tokens[i]
        want = bag_of_words([int(t) for t in row if t], len(model.vocab)) @ projection.words
        np.testing.assert_allclose(bank.vectors[i].numpy(), want, rtol=1e-5, atol=1e-6)
    grids = torch.randn(2, 4, projection.feature_dim)
    index, first = bank.shortlist(grids, 3)
    pooled = grids.mean(dim=1)
    pooled = pooled / pooled.norm(dim=1, keepdim=True)
    full = (pooled @ torch.from_numpy(projection.basis).t()) @ bank.vectors.t()
    assert torch.equal(index, torch.topk(full, 3, dim=1).indices)
    assert torch.allclose(first, torch.topk(full, 3, dim=1).values)


def test_choice_follows_the_margin(banked_model):
    folder, model = banked_model
    bank = load_for(folder, model)
    grids = torch.randn(1, 2, 2, bank.projection.feature_dim)
    ids = [model.vocab.stoi[w] for w in ("a", "cat", "runs")] + [model.vocab.end_id]
    gen = Candidate(["a", "cat", "runs"], ids, -20.0, torch.zeros(3, 2, 2))
    decoding = model.decoding.replace(bank_shortlist=5, bank_margin=-5.0)
    pick = bank.choose(model.decoder, grids, [gen], decoding)[0]
    scores = sentence_likelihood(bank.scorer(model.decoder), grids[0].reshape(4, -1), bank.tokens)
    assert pick.index == int(np.argmax(scores)) and pick.chosen  # prior and evidence 0: the likeliest sentence
    assert pick.generated_score == pytest.approx(-5.0) and pick.score == pytest.approx(float(scores.max()), abs=1e-5)
    out = with_bank(bank, model.decoder, grids, [[gen]], decoding)[0]
    assert [c.source for c in out] == ["bank", "generated"] and out[0].tokens == pick.tokens
    assert out[0].attention.shape == (len(pick.tokens), 2, 2)
    kept = bank.choose(model.decoder, grids, [gen], decoding.replace(bank_margin=5.0))[0]
    assert not kept.chosen  # the generated caption stays unless the bank beats it by the margin
    assert with_bank(bank, model.decoder, grids, [[gen]], decoding.replace(bank_shortlist=0))[0] == [gen]
    # a caption the model is sure of (mean log-probability -5 per token, not below -6) never consults the bank
    assert bank.choose(model.decoder, grids, [gen], decoding.replace(bank_unsure=-6.0)) == [None]
    assert bank.choose(model.decoder, grids, [gen], decoding.replace(bank_unsure=-4.0))[0].chosen


def test_support_deficit_lowers_sentences_naming_unsupported_objects(banked_model):
    folder, model = banked_model
    bank = load_for(folder, model)
    grids = torch.randn(1, 2, 2, bank.projection.feature_dim)
    decoding = model.decoding.replace(bank_shortlist=5, bank_margin=-5.0, bank_support=20.0)
    plain = bank.choose(model.decoder, grids, [None], decoding.replace(bank_support=0.0))[0]
    deficit = torch.zeros(1, len(model.vocab))
    objects = [w for w in plain.tokens if w in ("dog", "cat", "man", "ball", "grass")]
    deficit[0, [model.vocab.stoi[w] for w in objects]] = 10.0  # no evidence for the likeliest sentence's objects
    picked = bank.choose(model.decoder, grids, [None], decoding, deficit)[0]
    assert objects and picked.index != plain.index and not set(objects) <= set(picked.tokens)
    rows = bank.tokens[:2]
    np.testing.assert_allclose(mean_deficit(deficit[0], rows),
                               [10.0 * torch.isin(rows[i], deficit[0].nonzero()[:, 0]).sum().item()
                                / ((rows[i] != 0).sum().item() + 1) for i in range(2)])


def test_pipeline_says_where_each_caption_came_from(banked_model):
    from PIL import Image

    from captioner.pipeline import Captioner

    folder, model = banked_model
    cap = Captioner(model, onnx=False, bank=BankSource(folder))
    photo = Image.new("RGB", (64, 64), (200, 40, 40))
    plain = cap.caption(photo)
    assert plain.candidates[0].source == "generated" and plain.to_dict()["candidates"][0]["source"] == "generated"
    banked = cap.caption(photo, bank_shortlist=5, bank_margin=-5.0)
    assert banked.candidates[0].source == "bank" and banked.to_dict()["candidates"][0]["source"] == "bank"
    assert " ".join(banked.candidates[0].tokens) in {" ".join(model.vocab.itos[t] for t in row if t)
                                                      for row in load_for(folder, model).data.tokens}
    assert [c.caption for c in banked.candidates[1:]] == [c.caption for c in plain.candidates]
    assert SentenceBank.load(folder / "nowhere", model.vocab) is None
