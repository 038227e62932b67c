"""Grounded decoding (issue 13): confident object tags steer beam search toward naming the object
(`DecodingConfig.tag_bonus`): off in a bare `DecodingConfig`, on in the shipped model's decoding.json;
the candidates' scores stay the model's own. Grounding is tested alone here: the shipped support penalty and
echo rule (tests/test_support.py) are turned off in each setting."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from skimage import data as skdata  # scikit-image ([test]) ships the sample photos

from captioner.decoding.config import DecodingConfig
from captioner.decoding.processors import TagBonus
from captioner.decoding.search import decode
from captioner.errors import ConfigError
from captioner.pipeline import Captioner
from captioner.tags.grounding import label_to_vocab, tag_bonus, word_groups

SAMPLES = Path(skdata.__file__).parent


@pytest.fixture(scope="module")
def grids(shipped_captioner):
    photos = ["chelsea.png", "coffee.png", "camera.png", "motorcycle_left.png"]
    return shipped_captioner.encode(torch.stack([shipped_captioner.prepare(str(SAMPLES / p)).pixels for p in photos]))


@torch.inference_mode()
def model_logprob(shipped_captioner, grid, ids) -> float:
    """The model's summed log-probability of `ids` (teacher forcing, no bonus)."""
    dec, vocab = shipped_captioner.fast_decoder, shipped_captioner.model.vocab
    feats = dec.flatten(grid.unsqueeze(0))
    proj = dec.project(feats)
    h, c = dec.init_state(feats)
    word, total = torch.tensor([vocab.start_id]), 0.0
    for i in ids:
        logp, h, c, _ = dec.step(feats, proj, word, h, c)
        total += float(logp[0, i])
        word = torch.tensor([i])
    return total


def test_the_shipped_model_grounds_and_a_zero_bonus_changes_nothing(shipped_captioner, grids):
    assert DecodingConfig().tag_bonus == 0  # a model folder without grounding settings decodes as before
    shipped = shipped_captioner.decoding  # the settings chosen on Flickr8k val (weights/README.md)
    assert (shipped.tag_bonus, shipped.tag_min, shipped.tag_unsure, shipped.tag_reliable) == (8.0, 0.5, -0.84, 0.3)
    vocab = shipped_captioner.model.vocab
    zero = TagBonus(torch.zeros(len(grids), len(vocab)), torch.full((len(vocab),), -1))
    for beam in (1, 3):
        cfg = shipped_captioner.decoding.replace(support_penalty=0.0, no_echo=0, beam_size=beam, tag_bonus=0.0)
        plain = decode(shipped_captioner.fast_decoder, grids, vocab, cfg)
        steered = decode(shipped_captioner.fast_decoder, grids, vocab, cfg, zero)
        for a, b in zip(plain, steered):
            assert [c.tokens for c in a] == [c.tokens for c in b]
            assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-5)
    off = shipped_captioner.decoding.replace(support_penalty=0.0, no_echo=0, tag_bonus=0.0)
    via_pipeline = shipped_captioner.decode(grids, off)
    assert [c[0].tokens for c in via_pipeline] == [c[0].tokens for c in decode(shipped_captioner.fast_decoder, grids, vocab,
                                                                                 off)]


def test_grounding_names_the_tagged_object_and_keeps_the_models_score(shipped_captioner, grids):
    plain = shipped_captioner.caption(SAMPLES / "chelsea.png", support_penalty=0.0, no_echo=0, tag_bonus=0.0)
    assert plain.tags[0].label == "cat" and "cat" not in plain.candidates[0].tokens  # the ungrounded model misses it
    grounded = shipped_captioner.caption(SAMPLES / "chelsea.png", support_penalty=0.0, no_echo=0, tag_bonus=8.0, tag_min=0.5)
    assert "cat" in grounded.candidates[0].tokens
    for cand in grounded.candidates:
        assert cand.score == pytest.approx(model_logprob(shipped_captioner, grids[0], cand.ids), abs=1e-3)


def test_a_tag_is_named_once(shipped_captioner):
    r = shipped_captioner.caption(SAMPLES / "chelsea.png", support_penalty=0.0, no_echo=0, tag_bonus=20.0)
    for c in r.candidates:
        assert sum(t in ("cat", "cats") for t in c.tokens) <= 1, c.tokens


def test_tag_words_the_vocabulary_lacks_do_not_steer(shipped_captioner):
    vocab = shipped_captioner.model.vocab
    labels = ["dog", "broccoli", "giraffe", "teddy bear", "bus"]
    m = label_to_vocab(labels, vocab)
    assert m[0, vocab.stoi["dog"]] == 1 and m[0, vocab.stoi["dogs"]] == 1
    assert m[1].sum() == 0 and m[2].sum() == 0 and m[3].sum() == 0  # missing words; multi-word labels
    groups = word_groups(m)
    assert groups[vocab.stoi["dog"]] == groups[vocab.stoi["dogs"]] == 0 and groups[vocab.stoi["a"]] == -1


def test_grounding_settings_are_checked():
    with pytest.raises(ConfigError):
        DecodingConfig(tag_bonus=-1.0)
    with pytest.raises(ConfigError):
        DecodingConfig(tag_min=1.5)
    assert DecodingConfig.from_dict({"beam_size": 5}).tag_bonus == 0.0  # older decoding.json files load


def test_only_photos_whose_caption_misses_their_tags_take_the_steered_caption(shipped_captioner, grids):
    vocab = shipped_captioner.model.vocab
    V = len(vocab)
    groups = torch.full((V,), -1)
    groups[vocab.stoi["cat"]] = groups[vocab.stoi["cats"]] = 0
    bonus = torch.zeros(2, V)
    bonus[0, vocab.stoi["cat"]] = bonus[0, vocab.stoi["cats"]] = 5.0  # image 0 is tagged cat; image 1 nothing
    steer = TagBonus(bonus, groups)
    assert steer.misses(0, [vocab.stoi[w] for w in "a dog runs".split()])
    assert not steer.misses(0, [vocab.stoi[w] for w in "two cats sit".split()])
    assert not steer.misses(1, [vocab.stoi[w] for w in "a dog runs".split()])  # no tag to name
    assert steer.steers(0) and not steer.steers(1)
    assert steer.subset([0]).bonus.shape == (1, V)
    # a photo whose caption already names its confident tag keeps its caption with grounding on
    plain = shipped_captioner.decode(grids[:1], shipped_captioner.decoding.replace(support_penalty=0.0, no_echo=0, tag_bonus=0.0))
    labels = shipped_captioner.tagger.labels
    own = next(t for t in plain[0][0].tokens if t in labels and t in vocab.stoi)  # e.g. "shirt"
    cfg = shipped_captioner.decoding.replace(support_penalty=0.0, no_echo=0, tag_bonus=8.0, tag_min=0.5)
    probs = torch.zeros(1, len(labels))
    probs[0, labels.index(own)] = 0.9  # tag a word the caption already names
    assert [c.tokens for c in shipped_captioner.decode(grids[:1], cfg, probs)[0]] == [c.tokens for c in plain[0]]
    probs[0, labels.index("cat")] = 0.9  # and one it does not: still named, so the caption stays
    assert [c.tokens for c in shipped_captioner.decode(grids[:1], cfg, probs)[0]] == [c.tokens for c in plain[0]]


def test_grounded_batch_equals_the_plain_and_steered_searches_it_runs_side_by_side(shipped_captioner, grids):
    """One batched search gives each tagged photo's plain captions (kept when they name a tag) or its
    steered ones, exactly as two separate searches would, and untagged photos their plain captions."""
    vocab, labels = shipped_captioner.model.vocab, shipped_captioner.tagger.labels
    cfg = shipped_captioner.decoding.replace(support_penalty=0.0, no_echo=0, tag_bonus=8.0, tag_min=0.5)
    probs = torch.zeros(len(grids), len(labels))
    probs[0, labels.index("cat")] = 0.9  # chelsea: the plain caption misses the cat
    probs[2, labels.index("camera")] = 0.9
    together = shipped_captioner.decode(grids, cfg, probs)
    plain = decode(shipped_captioner.fast_decoder, grids, vocab, cfg.replace(tag_bonus=0.0))
    steer = tag_bonus(shipped_captioner.tagger, probs, vocab, cfg)
    for b in range(len(grids)):
        if steer.steers(b) and steer.misses(b, plain[b][0].ids):
            expected = decode(shipped_captioner.fast_decoder, grids[b : b + 1], vocab, cfg, steer.subset([b]))[0]
        else:
            expected = plain[b]
        assert [c.tokens for c in together[b]] == [c.tokens for c in expected], b
        assert [c.score for c in together[b]] == pytest.approx([c.score for c in expected], abs=1e-4)
    assert "cat" in together[0][0].tokens and together[1][0].tokens == plain[1][0].tokens


def test_a_caption_the_model_is_sure_of_keeps_its_words_however_its_tags_differ(shipped_captioner, grids):
    """`tag_unsure`: a plain caption that misses its tags gives way to the steered one only when its mean
    log-probability per word is below the setting; above it, the plain captions stay."""
    labels = shipped_captioner.tagger.labels
    cfg = shipped_captioner.decoding.replace(support_penalty=0.0, no_echo=0, tag_bonus=8.0, tag_min=0.5)
    probs = torch.zeros(1, len(labels))
    probs[0, labels.index("cat")] = 0.9  # chelsea: the plain caption misses the cat
    plain = shipped_captioner.decode(grids[:1], cfg.replace(tag_bonus=0.0))[0]
    steered = shipped_captioner.decode(grids[:1], cfg, probs)[0]
    assert "cat" in steered[0].tokens and "cat" not in plain[0].tokens
    own = plain[0].normalized_score
    sure = shipped_captioner.decode(grids[:1], cfg.replace(tag_unsure=own - 0.01), probs)[0]  # surer than the setting
    assert [c.tokens for c in sure] == [c.tokens for c in plain]
    unsure = shipped_captioner.decode(grids[:1], cfg.replace(tag_unsure=min(own + 0.01, -0.001)), probs)[0]
    assert [c.tokens for c in unsure] == [c.tokens for c in steered]
    with pytest.raises(ConfigError):
        DecodingConfig(tag_unsure=0.5)


def test_a_tag_word_people_rarely_say_does_not_steer(shipped_captioner, grids):
    """`tag_reliable`: only tag words that Flickr8k train captions name often enough when the tagger sees them
    steer (`tag_reliability.json`); the others stay tags."""
    from captioner.tags.reliability import TagReliability

    table = shipped_captioner.tag_reliability
    assert table is not None and table.share("dog") > 0.9 and table.share("gymnast") < 0.3
    assert TagReliability({}, prior=0.5).share("zebra") == 0.5  # a word train never showed counts as the prior
    labels = shipped_captioner.tagger.labels
    cfg = shipped_captioner.decoding.replace(support_penalty=0.0, no_echo=0, tag_bonus=8.0, tag_min=0.5, tag_unsure=0.0, tag_reliable=0.3)
    probs = torch.zeros(1, len(labels))
    probs[0, labels.index("cat")] = 0.9  # chelsea: the plain caption misses the cat
    plain = shipped_captioner.decode(grids[:1], cfg.replace(tag_bonus=0.0))[0]
    assert "cat" in shipped_captioner.decode(grids[:1], cfg, probs)[0][0].tokens  # cat is a word people say
    rare = TagReliability({"cat": (100, 5)}, prior=0.5)  # a table where people named the cat 5 times in 100
    bare = Captioner(shipped_captioner.model, new_words=shipped_captioner.new_words, tag_reliability=rare)
    assert [c.tokens for c in bare.decode(grids[:1], cfg, probs)[0]] == [c.tokens for c in plain]
    assert [c.tokens for c in bare.decode(grids[:1], cfg.replace(tag_reliable=0.0), probs)[0]] != [c.tokens for c in plain]


def test_the_steer_touches_only_the_columns_it_steers():
    V = 50
    bonus = torch.zeros(2, V)
    bonus[0, 7] = 3.0
    bonus[1, 9] = float("-inf")  # banned for image 1
    groups = torch.full((V,), -1)
    groups[7], groups[9] = 0, 1
    steer = TagBonus(bonus, groups)
    assert steer.cols.tolist() == [7, 9]
    logp = torch.randn(3, V)
    out = steer(logp, torch.zeros(3, 0, dtype=torch.long), 0, torch.tensor([0, 1, 1]))
    expected = logp + bonus[[0, 1, 1]]
    assert torch.equal(out, expected)
    # once named, the bonus stops; a ban stays
    out = steer(logp, torch.tensor([[7], [9], [3]]), 1, torch.tensor([0, 1, 1]))
    assert out[0, 7] == logp[0, 7] and out[1, 9] == float("-inf") and out[2, 9] == float("-inf")
    assert torch.equal(steer.plain()[:, :], torch.zeros(2, V))
