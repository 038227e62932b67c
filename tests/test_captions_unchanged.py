"""The best captions of the 1,000 Flickr8k test photos are those release 0.1.0 gave (recorded in
tests/fixtures/flickr8k_test_captions_0.1.0.json by `captioner evaluate --predictions` at commit ab2242d)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioner import Captioner
from captioner.data import load_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "flickr8k_test_captions_0.1.0.json"


@pytest.mark.slow
@pytest.mark.parametrize("beam", [5, 1])
def test_best_captions_of_the_test_split_are_unchanged(flickr8k_dir, beam):
    expected = json.loads(FIXTURE.read_text())[f"beam_{beam}"]
    ds = load_dataset(str(flickr8k_dir))
    ids = ds.split("test")
    assert sorted(ids) == sorted(expected)
    captioner = Captioner.load()
    got = {i: r.caption for i, r in zip(ids, captioner.caption_many([ds.image_path(i) for i in ids], beam_size=beam,
                                                                    batch_size=50))}
    changed = [i for i in ids if got[i] != expected[i]]
    assert not changed, f"{len(changed)} of {len(ids)} changed, e.g. {changed[0]}: {got[changed[0]]!r} vs {expected[changed[0]]!r}"
