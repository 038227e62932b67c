"""Saving and loading model folders: identical captions after a round trip, clear errors on bad folders."""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from captioner.errors import ModelLoadError
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab, tokenize
from captioner.pipeline import Captioner


@pytest.fixture()
def photo(tmp_path):
    img = Image.effect_noise((96, 80), 60).convert("RGB")
    img.paste((200, 30, 30), (10, 10, 50, 40))
    path = tmp_path / "photo.png"
    img.save(path)
    return path


def test_round_trip_gives_identical_captions(tiny_model_dir, tmp_path, photo):
    a = Captioner.load(tiny_model_dir).caption(photo, beam_size=3)
    CaptionModel.load(tiny_model_dir).save(tmp_path / "copy")
    b = Captioner.load(tmp_path / "copy").caption(photo, beam_size=3)
    assert [c.caption for c in a.candidates] == [c.caption for c in b.candidates]
    assert [c.score for c in a.candidates] == pytest.approx([c.score for c in b.candidates], abs=1e-6)
    cfg = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert cfg["backbone"] == "efficientnet-lite2" and cfg["vocab_size"] == 16


def test_half_precision_save_loads_and_is_half_the_size(tiny_model_dir, tmp_path, photo):
    model = CaptionModel.load(tiny_model_dir)
    model.save(tmp_path / "half", half=True)
    full = (tiny_model_dir / "decoder.safetensors").stat().st_size
    assert (tmp_path / "half" / "decoder.safetensors").stat().st_size < 0.6 * full
    r = Captioner.load(tmp_path / "half").caption(photo)
    assert r.error is None and r.candidates


def test_corrupt_weights_give_a_clear_error(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "decoder.safetensors").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ModelLoadError, match="corrupt"):
        CaptionModel.load(bad)


def test_vocab_that_does_not_match_the_weights(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    vocab = Vocab.load(bad / "vocab.json")
    Vocab(vocab.itos + ["zebra"]).save(bad / "vocab.json")
    with pytest.raises(ModelLoadError, match="does not belong"):
        CaptionModel.load(bad)


def test_weights_of_another_shape(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["hidden_dim"] = 24
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="does not match"):
        CaptionModel.load(bad)


def test_missing_folder_and_files(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        CaptionModel.load(tmp_path)
    part = tmp_path / "part"
    shutil.copytree(tiny_model_dir, part)
    (part / "decoder.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        CaptionModel.load(part)


def test_vocab_build_encode_decode_and_save(tmp_path):
    vocab = Vocab.build(["A dog runs.", "a dog sits", "the cat"], min_freq=2)
    assert vocab.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert set(vocab.itos[4:]) == {"a", "dog"}
    ids = vocab.encode("A dog flies")
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id and vocab.unk_id in ids
    assert vocab.decode(ids) == ["a", "dog", "<unk>"]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == vocab.itos
    assert tokenize("Two dogs' toys, isn't it?") == ["two", "dogs", "toys", "isn't", "it"]
