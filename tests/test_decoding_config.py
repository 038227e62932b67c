"""DecodingConfig: one default (the model's) everywhere, saved beside config.json; old folders still load;
the decoding rules are logit processors shared by every decoder."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from captioner import Captioner, DecodingConfig, load_model
from captioner.decoding import StepDecoder, decoding_rules
from captioner.decoding.processors import apply_rules
from captioner.errors import ConfigError, ModelLoadError
from captioner.model.decoder import Decoder
from captioner.model.folder import DEFAULT_MODEL_DIR
from captioner.model.vocab import Vocab
from captioner.runtime.fused_decoder import InferenceDecoder


def test_the_model_folder_carries_its_decoding_and_every_entry_point_uses_it(tiny_model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    DecodingConfig(beam_size=4, max_len=7, length_penalty=0.5, no_repeat_ngram=2).save(folder / "decoding.json")
    cap = Captioner.load(folder)
    assert cap.decoding == DecodingConfig(beam_size=4, max_len=7, length_penalty=0.5, no_repeat_ngram=2)
    from PIL import Image

    photo = Image.new("RGB", (80, 60), (10, 200, 30))
    assert len(cap.caption(photo).candidates) == 4  # Captioner.caption: the model's beam
    assert len(cap.caption(photo, beam_size=2).candidates) == 2  # one field changed, the rest kept
    assert cap.decoding_for(beam_size=2).max_len == 7
    # the CLI without --beam-size: the model's beam too
    img = tmp_path / "p.png"
    photo.save(img)
    out = subprocess.run([sys.executable, "-m", "captioner", "caption", str(img), "--json", "--model", str(folder)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["candidates"]) == 4


def test_the_shipped_model_decodes_with_beam_5_everywhere():
    model = load_model(DEFAULT_MODEL_DIR, with_encoder=False)
    assert (DEFAULT_MODEL_DIR / "decoding.json").is_file()
    assert model.decoding == DecodingConfig(beam_size=5, max_len=30, length_penalty=0.75, no_repeat_ngram=2,
                                            tag_bonus=8.0, tag_min=0.5, tag_unsure=-0.84, tag_reliable=0.3,
                                            support_penalty=2.0, support_min=0.3, no_echo=1, no_bare_noun=1)


def test_an_old_model_folder_with_decoding_keys_in_config_json_still_loads(tiny_model_dir, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "decoding.json").unlink()
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(max_caption_len=9, length_penalty=0.25, no_repeat_ngram=3, default_beam_size=2)
    (folder / "config.json").write_text(json.dumps(cfg))
    model = load_model(folder)
    assert model.decoding == DecodingConfig(beam_size=2, max_len=9, length_penalty=0.25, no_repeat_ngram=3)
    model.save(tmp_path / "resaved")  # saved again: the new layout
    assert "default_beam_size" not in json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert load_model(tmp_path / "resaved").decoding == model.decoding


@pytest.mark.parametrize("bad", [dict(beam_size=0), dict(beam_size=-1), dict(beam_size=1000), dict(max_len=0),
                                 dict(max_len=-5), dict(max_len=101), dict(length_penalty=float("nan")),
                                 dict(beam_size=2.5), dict(beam_size=True), dict(no_repeat_ngram=-1)])
def test_decoding_values_out_of_range_are_refused(bad):
    with pytest.raises(ConfigError):
        DecodingConfig(**bad)


@pytest.mark.parametrize("change", [{"hidden_dim": 10**7}, {"backbone": "vgg-nope"}, {"grid": "7"},
                                    {"dropout": 3.0}, {"surprise": 1}])
def test_a_bad_config_json_is_a_clear_model_load_error(tiny_model_dir, tmp_path, change):
    folder = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(change)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError) as err:
        load_model(folder)
    assert str(folder) in str(err.value) and next(iter(change)) in str(err.value)


def test_every_step_decoder_implements_the_protocol(tiny_model_dir):
    cap = Captioner.load(tiny_model_dir)
    fast = cap.fast_decoder  # the ONNX step decoder when onnxruntime is there
    dec = cap.model.decoder
    for d in (dec, InferenceDecoder(dec), fast):
        assert isinstance(d, StepDecoder), type(d).__name__


def test_the_rules_ban_specials_end_first_and_repeated_ngrams():
    vocab = Vocab(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "runs"])
    logp = torch.zeros(2, len(vocab))
    first = apply_rules(decoding_rules(vocab), logp, torch.zeros(2, 0, dtype=torch.long), 0)
    banned = {i for i in range(len(vocab)) if first[0, i] == float("-inf")}
    assert banned == {vocab.pad_id, vocab.start_id, vocab.unk_id, vocab.end_id}
    later = apply_rules(decoding_rules(vocab), logp, torch.tensor([[4, 5], [4, 5]]), 2)
    assert later[0, vocab.end_id] == 0  # <end> may come later
    a, dog = vocab.stoi["a"], vocab.stoi["dog"]
    seqs = torch.tensor([[a, dog, a], [dog, a, dog]])
    blocked = apply_rules(decoding_rules(vocab, no_repeat_ngram=2), logp, seqs, 3)
    assert blocked[0, dog] == float("-inf")  # "a dog" again
    assert blocked[1, a] == float("-inf")  # "dog a" again
    assert blocked[0, vocab.end_id] == 0


def test_sampling_obeys_the_same_rules(tiny_model_dir):
    from captioner.training.scst import sample_captions

    model = load_model(tiny_model_dir, with_encoder=False)
    vocab = model.vocab
    torch.manual_seed(0)
    feats = torch.randn(4, 2, 2, model.decoder.attention.feature_proj.in_features)
    ids, _, mask = sample_captions(model.decoder, feats, vocab, 8, 8)
    assert not bool((ids[:, 0] == vocab.end_id).any())
    used = ids[mask.bool()]
    assert not bool(torch.isin(used, torch.tensor([vocab.pad_id, vocab.start_id, vocab.unk_id])).any())


def test_decoder_subclass_is_a_step_decoder():
    assert issubclass(Decoder, torch.nn.Module) and isinstance(Decoder(10, 8, 4, 4, 4), StepDecoder)
