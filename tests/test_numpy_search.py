"""Beam search in numpy over the model folder's ONNX decoder step gives the PyTorch path's captions (same word
ids, scores within 1e-4) for plain decoding, at beam 1, 3 and 10, with the shipped model's rules."""
from __future__ import annotations

import pytest
import torch

from captioner.runtime.numpy_search import NumpyStepDecoder, decode, supported
from oracles.photos import make_photo, mandelbrot_photo


@pytest.fixture(scope="module")
def grids(shipped_captioner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("np-photos")
    photos = [make_photo(folder / f"p{i}.jpg", 200 + 60 * i, 150, seed=i) for i in range(3)]
    photos.append(mandelbrot_photo(folder / "m.jpg"))
    prepared = [shipped_captioner.prepare(p) for p in photos]
    return shipped_captioner.encode(torch.stack([p.tensor for p in prepared]))


@pytest.mark.parametrize("beam", [1, 3, 10])
def test_numpy_search_gives_the_pytorch_captions(shipped_captioner, grids, beam):
    cap = shipped_captioner
    cfg = cap.decoding.replace(beam_size=beam, tag_bonus=0.0, support_penalty=0.0, bank_shortlist=0)
    assert supported(cfg) and cfg.no_repeat_ngram > 0 and cfg.no_echo  # the shipped rules are on
    decoder = NumpyStepDecoder(cap.model.folder)
    ref = cap.decode(grids, cfg)
    got = decode(decoder, grids.numpy(), cap.model.vocab, cfg)
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        assert [c.ids for c in g] == [c.ids for c in r]
        assert max(abs(a.score - b.score) for a, b in zip(r, g)) < 1e-4
        assert g[0].attention.shape == tuple(r[0].attention.shape)


def test_grounded_decoding_is_refused_not_silently_ignored(shipped_captioner, grids):
    cfg = shipped_captioner.decoding.replace(tag_bonus=8.0)
    with pytest.raises(ValueError, match="PyTorch path"):
        decode(NumpyStepDecoder(shipped_captioner.model.folder), grids.numpy(), shipped_captioner.model.vocab, cfg)

