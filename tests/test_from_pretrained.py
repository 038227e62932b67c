"""One way in: `Captioner.from_pretrained(dir_or_none)` reads a model folder with every optional file (`load` is
its alias), and a `DecodingConfig` given by the caller overrides only the fields the caller set, on top of the
model's own decoding (as Hugging Face's GenerationConfig merges): `DecodingConfig(beam_size=3)` keeps the
model's grounding, length penalty and n-gram rule."""
from __future__ import annotations

import pickle

from captioner import Captioner, DecodingConfig


def test_from_pretrained_is_the_one_loader_and_load_its_alias(shipped_captioner):
    assert Captioner.load.__func__ is Captioner.from_pretrained.__func__
    cap = shipped_captioner
    assert cap.model.folder is not None and (cap.model.folder / "config.json").is_file()
    assert cap.scorer is not None and cap.new_words is not None and cap.tag_reliability is not None


def test_a_callers_config_overrides_only_the_fields_it_sets(shipped_captioner):
    cap = shipped_captioner
    own = cap.decoding
    assert own.tag_bonus > 0 and own.length_penalty > 0 and own.no_repeat_ngram > 0  # the shipped decoding
    mine = DecodingConfig(beam_size=3)
    assert mine.given == {"beam_size"}
    assert cap.decoding_for(mine) == own.replace(beam_size=3)  # grounding, length penalty, n-gram rule kept
    assert cap.decoding_for(DecodingConfig()) == own
    assert cap.decoding_for(DecodingConfig(3, 20)) == own.replace(beam_size=3, max_len=20)  # positional too
    assert cap.decoding_for(mine, max_len=12) == own.replace(beam_size=3, max_len=12)
    # set to the class default on purpose: still the caller's (not "unset" because it equals the default)
    assert DecodingConfig(tag_bonus=0.0).given == {"tag_bonus"}
    assert cap.decoding_for(DecodingConfig(tag_bonus=0.0)).tag_bonus == 0.0


def test_a_config_made_from_the_models_passes_whole(shipped_captioner):
    cap = shipped_captioner
    full = cap.decoding.replace(beam_size=2)
    assert cap.decoding_for(full) == full
    assert pickle.loads(pickle.dumps(DecodingConfig(beam_size=4))).given == {"beam_size"}  # Ray workers
    assert DecodingConfig.from_dict({"beam_size": 4, "max_len": 9}).given == {"beam_size", "max_len"}
    assert DecodingConfig(beam_size=4).replace(max_len=9).given == {"beam_size", "max_len"}


def test_caption_with_a_partial_config_keeps_grounding(shipped_captioner, tmp_path):
    from oracles.photos import mandelbrot_photo

    photo = mandelbrot_photo(tmp_path / "m.jpg")
    cap = shipped_captioner
    got = cap.caption(photo, DecodingConfig(beam_size=3))
    want = cap.caption(photo, cap.decoding.replace(beam_size=3))
    assert [c.ids for c in got.candidates] == [c.ids for c in want.candidates]
    assert got.beam_size == 3


def test_finds_first_stage_comes_from_the_captioners_own_folder(shipped_captioner, tmp_path):
    from types import SimpleNamespace

    from captioner.retrieval.first_stage import projection_for

    cap = shipped_captioner
    assert projection_for(cap) is not None  # the shipped folder holds query_projection.safetensors
    elsewhere = SimpleNamespace(model=SimpleNamespace(folder=tmp_path, vocab=cap.model.vocab, decoder=cap.model.decoder),
                                name=cap.name)  # the same model, loaded from a folder without the file
    assert projection_for(elsewhere) is None
