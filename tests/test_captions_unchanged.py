"""With grounded decoding, the support penalty and the echo rule off (`--tag-bonus 0 --support-penalty 0
--no-echo 0`), the best captions of the 1,000 Flickr8k test photos are those
release 0.1.0 gave (recorded in tests/fixtures/flickr8k_test_captions_0.1.0.json by `captioner evaluate
--predictions` at commit ab2242d). With grounded decoding on (the shipped decoding, issue 13) only photos
whose 0.1.0 caption names none of their confident tags that steer (`tag_reliable`) change, and most of those
now name one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioner.data import load_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "flickr8k_test_captions_0.1.0.json"


@pytest.mark.slow
@pytest.mark.parametrize("beam", [5, 1])
def test_best_captions_of_the_test_split_are_unchanged(flickr8k_dir, beam, shipped_captioner):
    expected = json.loads(FIXTURE.read_text())[f"beam_{beam}"]
    ds = load_dataset(str(flickr8k_dir))
    ids = ds.split("test")
    assert sorted(ids) == sorted(expected)
    captioner = shipped_captioner
    got = {i: r.caption for i, r in zip(ids, captioner.caption_many([ds.image_path(i) for i in ids], beam_size=beam,
                                                                    batch_size=50, tag_bonus=0.0, support_penalty=0.0,
                                                                    no_echo=0))}
    changed = [i for i in ids if got[i] != expected[i]]
    assert not changed, f"{len(changed)} of {len(ids)} changed, e.g. {changed[0]}: {got[changed[0]]!r} vs {expected[changed[0]]!r}"


@pytest.mark.slow
def test_grounded_decoding_changes_only_captions_that_miss_their_tags(flickr8k_dir, shipped_captioner):
    expected = json.loads(FIXTURE.read_text())["beam_5"]
    ds = load_dataset(str(flickr8k_dir))
    ids = ds.split("test")
    captioner = shipped_captioner
    cfg = captioner.decoding.replace(tag_bonus=8.0, tag_min=0.5, support_penalty=0.0, no_echo=0)  # grounding alone
    words = set(captioner.model.vocab.itos) | set(captioner.new_words.words)
    changed = names_one = 0
    labels = captioner.tagger.labels
    for i, r in zip(ids, captioner.caption_many([ds.image_path(i) for i in ids], cfg, batch_size=50, keep_features=True)):
        if r.caption == expected[i]:
            continue
        changed += 1
        probs = captioner.tagger.word_probabilities(r.features[None].astype("float32"))[0]
        tags = {labels[k] for k in (probs >= cfg.tag_min - 1e-3).nonzero().flatten().tolist()
                if captioner.tag_reliability.share(labels[k]) >= cfg.tag_reliable}  # the tags that steer
        named = {w for t in tags for w in (t, t + "s", t + "es") if w in words}
        assert named, (i, r.caption, tags)
        assert not named & set(expected[i].split()), (i, expected[i], r.caption)  # 0.1.0 named none of them
        names_one += bool(named & set(r.candidates[0].tokens))  # the bonus steers; it does not force
    assert 0 < changed < 0.3 * len(ids) and names_one >= 0.8 * changed, (changed, names_one)
