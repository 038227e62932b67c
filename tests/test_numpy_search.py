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
    return shipped_captioner.encode(torch.stack([p.pixels for p in prepared]))


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


def test_the_lean_captioner_gives_the_same_caption_without_importing_torch(shipped_captioner, tmp_path):
    """The shipped decoding whole (no sentence bank in it), the photo's tags, confidence and warnings too, in a
    process without torch."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from skimage import data

    photo = str(Path(data.__file__).parent / "coffee.png")  # new-word tags (espresso): grounded, extended
    assert shipped_captioner.decoding.bank_shortlist == 0
    code = ("import json, sys; from captioner.runtime.lean import LeanCaptioner; "
            "r = LeanCaptioner().caption(sys.argv[1]); "
            "print(json.dumps({'ids': [c.ids for c in r.candidates], 'score': r.candidates[0].score, "
            "'tags': [t.label for t in r.tags], 'confidence': r.confidence, 'warnings': r.warnings, "
            "'loaded': [m for m in ('torch', 'onnx', 'gradio') if m in sys.modules]}))")
    out = subprocess.run([sys.executable, "-c", code, photo], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"] == []
    want = shipped_captioner.caption(photo)
    assert got["ids"] == [c.ids for c in want.candidates] and abs(got["score"] - want.candidates[0].score) < 1e-4
    assert got["tags"] == [t.label for t in want.tags]
    assert want.confidence is not None and abs(got["confidence"] - want.confidence) < 1e-3
    assert got["warnings"] == want.warnings

def test_the_numpy_tagger_gives_the_pytorch_tags(shipped_captioner, grids):
    import numpy as np

    from captioner.runtime.numpy_tagger import NumpyTagger

    mine, theirs = NumpyTagger.for_backbone(shipped_captioner.cfg.backbone), shipped_captioner.tagger
    assert mine.labels == theirs.labels
    want = theirs.word_probabilities(grids).numpy()
    got = mine.word_probabilities(grids.numpy())
    assert np.abs(got - want).max() < 1e-5
    assert [[(t.label, round(t.score, 4)) for t in r] for r in mine.tags(grids.numpy())] == \
        [[(t.label, round(t.score, 4)) for t in r] for r in theirs.tags(grids)]
    assert any(mine.tags(grids.numpy()))  # some photo has a tag: the comparison says something


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_weights_files_are_read_without_torch(tmp_path, zip_format):
    import collections

    import numpy as np

    from captioner.runtime.torch_pickle import load

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict(w=base, t=base.t(), h=torch.ones(3, dtype=torch.float16) / 3,
                                    i=torch.tensor([1, 2], dtype=torch.long), s=base[1:, 2:])
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    got = load(path)
    assert list(got) == list(state)
    for k, v in state.items():
        assert got[k].dtype == v.numpy().dtype and np.array_equal(got[k], v.numpy()), k


@pytest.fixture(scope="module")
def tagged_grids(shipped_captioner):
    """Photos the tagger is confident about (a cat twice, coffee, a rocket), and two it is not."""
    from PIL import Image
    from skimage import data

    photos = [Image.fromarray(getattr(data, n)()).convert("RGB")
              for n in ("chelsea", "astronaut", "coffee", "rocket", "cat", "hubble_deep_field")]
    return shipped_captioner.encode(torch.stack([shipped_captioner.prepare(p).pixels for p in photos]))


@pytest.mark.parametrize("beam", [1, 3, 10])
@pytest.mark.parametrize("tag_unsure", [0.0, -0.84])
@pytest.mark.parametrize("support_penalty", [0.0, 2.0])
def test_numpy_grounded_decoding_gives_the_pytorch_captions(shipped_captioner, tagged_grids, beam, tag_unsure,
                                                            support_penalty):
    from captioner.runtime.numpy_grounding import decode_with_tags
    from captioner.runtime.numpy_support import NumpySupport
    from captioner.runtime.numpy_tagger import NumpyTagger
    from captioner.tags.grounding import decode_with_tags as torch_decode_with_tags

    cap = shipped_captioner
    cfg = cap.decoding.replace(beam_size=beam, support_penalty=support_penalty, tag_unsure=tag_unsure)
    assert cfg.tag_bonus > 0 and cfg.tag_reliable > 0  # grounding and the reliability mask are on
    tagger = NumpyTagger.for_backbone(cap.cfg.backbone)
    support = NumpySupport.load(cap.model.folder, tagger.labels)
    assert support is not None and support.names == cap.support.names
    assert sum(bool(r) for r in tagger.tags(tagged_grids.numpy())) >= 4
    ref = torch_decode_with_tags(cap.tagger, cap.fast_decoder, tagged_grids, cap.model.vocab, cfg, None, None,
                                 cap.tag_reliability, cap.support)
    got = decode_with_tags(tagger, NumpyStepDecoder(cap.model.folder), tagged_grids.numpy(), cap.model.vocab, cfg,
                           reliability=cap.tag_reliability, support=support)
    for r, g in zip(ref, got):
        assert [c.ids for c in g] == [c.ids for c in r]
        assert max(abs(a.score - b.score) for a, b in zip(r, g)) < 1e-4


@pytest.mark.parametrize("beam", [1, 5])
@pytest.mark.parametrize("inject_zebra", [False, True])
def test_numpy_decoding_with_new_words_gives_the_pytorch_captions(shipped_captioner, beam, inject_zebra):
    """The shipped decoding whole (grounding, tag reliability, support penalty, new words: `espresso` and `tripod`
    are new words the tagger sees here; `zebra` is made up on the cat photo, as in tests/test_new_words.py)."""
    from pathlib import Path

    from skimage import data

    from captioner.runtime.numpy_grounding import decode_with_tags
    from captioner.runtime.numpy_new_words import load_new_words
    from captioner.runtime.numpy_support import NumpySupport
    from captioner.runtime.numpy_tagger import NumpyTagger
    from captioner.tags.grounding import decode_with_tags as torch_decode_with_tags

    cap = shipped_captioner
    samples = Path(data.__file__).parent
    grids = cap.encode(torch.stack([cap.prepare(str(samples / p)).pixels
                                    for p in ("chelsea.png", "coffee.png", "camera.png", "motorcycle_left.png")]))
    probs = cap.tagger.word_probabilities(grids).clone()
    if inject_zebra:
        probs[0, cap.tagger.labels.index("zebra")] = 0.9
    cfg = cap.decoding.replace(beam_size=beam)
    tagger = NumpyTagger.for_backbone(cap.cfg.backbone)
    ref = torch_decode_with_tags(cap.tagger, cap.fast_decoder, grids, cap.model.vocab, cfg, cap.new_words, probs,
                                 cap.tag_reliability, cap.support)
    got = decode_with_tags(tagger, NumpyStepDecoder(cap.model.folder), grids.numpy(), cap.model.vocab, cfg,
                           probs.numpy(), cap.tag_reliability, NumpySupport.load(cap.model.folder, tagger.labels),
                           load_new_words(cap.model.folder))
    assert any(len(c.ids) and max(c.ids) >= len(cap.model.vocab) for r in got for c in r)  # a new word was generated
    for r, g in zip(ref, got):
        assert [c.ids for c in g] == [c.ids for c in r]
        assert max(abs(a.score - b.score) for a, b in zip(r, g)) < 1e-4


def test_torch_weights_reader_never_runs_code_from_the_file(tmp_path):
    """The legacy format's header and key list are unpickled as restrictively as the tensors: a file whose
    header would call os.system is refused, and nothing runs."""
    import pickle

    from captioner.runtime.torch_pickle import load

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump(Evil(), fh)  # where the magic number should be
        pickle.dump({}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("seed", range(4))
def test_numpy_topk_is_a_stable_sort_of_the_row_and_agrees_with_torch(seed):
    """The numpy top-k (a partition, then a stable sort of what is at or above the k-th value) keeps the
    earlier entry on ties, as a stable sort of the whole row does, and gives torch.topk's values."""
    import numpy as np

    from captioner.decoding.array_ops import Arrays

    rng = np.random.default_rng(seed)
    for _ in range(50):
        rows, n = int(rng.integers(1, 40)), int(rng.integers(1, 9000))
        x = np.round(rng.normal(size=(rows, n)), int(rng.integers(0, 3))).astype(np.float32)  # many ties
        x[rng.random((rows, n)) < 0.3] = -np.inf
        k = min(int(rng.integers(1, 31)), n)
        values, idx = Arrays().topk(x, k)
        want = np.argsort(-x, axis=1, kind="stable")[:, :k]
        assert np.array_equal(idx, want)
        assert np.array_equal(values, np.take_along_axis(x, want, axis=1))
        assert np.array_equal(values, torch.from_numpy(x).topk(k, dim=1).values.numpy())
