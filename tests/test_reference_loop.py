"""The tutorial-style reference loop (tests/oracles/reference_loop.py, also the benchmark's
baseline) decodes like the engine, so the benchmark's speed comparison compares like with like:
same best caption, same word ids, same score."""
from __future__ import annotations

import pytest
import torch

from captioner.pipeline import Captioner
from oracles.photos import make_photo
from oracles.reference_loop import reference_caption

# The tiny random model never emits <end> by itself. These variants give <end> a state-dependent
# logit (seed, bias, scale of its output row) so beams end early at various steps while others run
# to max_len, and make <unk>/<pad> tempting so the ban really matters.
VARIANTS = [None, (0, 1.0, 10.0), (1, 1.0, 10.0)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    # Small enough (< 3x the tiny model's 64 px input) that the engine's draft decoding and
    # reducing_gap resize give exactly the tensor the tutorial's plain resize gives.
    folder = tmp_path_factory.mktemp("ref_photos")
    return [make_photo(folder / f"p{i}.jpg", w, h, seed=i) for i, (w, h) in enumerate([(64, 64), (96, 72), (150, 100)])]


def _captioner(model_dir, variant) -> Captioner:
    cap = Captioner.load(model_dir)
    if variant is not None:
        seed, bias, scale = variant
        dec, vocab = cap.model.decoder, cap.model.vocab
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            dec.out.weight[vocab.end_id] = torch.randn(dec.out.weight.shape[1], generator=g) * scale * 0.1
            dec.out.bias[vocab.end_id] += bias
            dec.out.bias[vocab.unk_id] += 3.0
            dec.out.bias[vocab.pad_id] += 3.0
    return cap


@pytest.fixture
def one_thread():
    # One thread: identical results, and no OpenMP spin-waiting when another process is busy
    # on the CPU (with 2 threads this test took minutes beside a training run instead of seconds).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_reference_loop_gives_the_engine_caption(tiny_model_dir, photos, one_thread):
    max_len = None
    ended_lengths, ran_out = set(), 0
    for variant in VARIANTS:
        cap = _captioner(tiny_model_dir, variant)
        max_len = cap.decoding.max_len
        for beam in (1, 3, 5):
            for p in photos:
                engine = cap.caption(p, beam_size=beam)
                ref = reference_caption(cap.model, p, beam_size=beam)
                best = engine.candidates[0]
                where = f"variant {variant}, beam {beam}, {p.name}"
                assert ref.caption == engine.caption, where
                assert ref.ids == best.ids, where
                assert ref.score == pytest.approx(best.score, abs=1e-4), where
                # the same input tensor either way: the comparison is about decoding alone
                assert reference_caption(cap.model, cap.prepare(p).pixels, beam_size=beam).ids == best.ids, where
                for c in engine.candidates:
                    if c.ids[-1] == cap.model.vocab.end_id:
                        ended_lengths.add(len(c.ids))
                    else:
                        ran_out += 1
    # the cases above really exercised the shrinking beam: beams ending at several steps, and
    # beams completed at max_len
    assert len(ended_lengths - {max_len}) >= 3, ended_lengths
    assert ran_out > 0


def test_reference_loop_blocks_repeated_ngrams_like_the_engine(tiny_model_dir, photos, one_thread):
    """The tiny model's long captions repeat words; with no_repeat_ngram both sides block the same."""
    blocked_somewhere = False
    for variant in VARIANTS:
        cap = _captioner(tiny_model_dir, variant)
        plain_decoding = cap.decoding
        for n in (2, 3):
            # DecodingConfig is frozen: give the engine and the model (the reference loop reads
            # model.decoding) a changed copy, and put the original back afterwards
            cap.decoding = cap.model.decoding = plain_decoding.replace(no_repeat_ngram=n)
            try:
                for beam in (1, 3):
                    for p in photos:
                        engine = cap.caption(p, beam_size=beam)
                        ref = reference_caption(cap.model, p, beam_size=beam)
                        plain = reference_caption(cap.model, p, beam_size=beam, no_repeat_ngram=0)
                        where = f"variant {variant}, n {n}, beam {beam}, {p.name}"
                        assert ref.ids == engine.candidates[0].ids, where
                        assert ref.score == pytest.approx(engine.candidates[0].score, abs=1e-4), where
                        blocked_somewhere |= plain.ids != ref.ids
            finally:
                cap.decoding = cap.model.decoding = plain_decoding
    assert blocked_somewhere  # the block changed some captions, so the comparison tested it
