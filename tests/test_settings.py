"""One validated-settings base (captioner.settings) for every config dataclass: a value out of range is refused
when the config is made, with one line naming the setting and what it allows; the CLI's flags and the studio's
sliders read their help and bounds from the same field metadata; saved decoding.json and config.json still load."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil

import pytest

from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.cli.main import build_parser, main
from captioner.decoding.config import DecodingConfig
from captioner.errors import ConfigError
from captioner.imagine.config import ImagineConfig
from captioner.learning.config import LearnConfig
from captioner.model.config import ModelConfig, load_configs
from captioner.model.folder import DEFAULT_MODEL_DIR
from captioner.retrieval.config import FindConfig
from captioner.scale.config import RayJobConfig
from captioner.settings import SettingError, Settings, allowed, max_threads, setting
from captioner.storage.options import ListOptions
from captioner.studio.config import DEFAULT_MAX_UPLOAD_MB, MAX_BEAM, MAX_LEN, StudioConfig
from captioner.tags.tagger import TagConfig
from captioner.training.config import RunConfig, SCSTConfig, TrainConfig

CONFIGS = (DecodingConfig, ModelConfig, RunConfig, TrainConfig, SCSTConfig, LearnConfig, FindConfig, RayJobConfig,
           ImagineConfig, TagConfig, StudioConfig, ListOptions)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_is_a_settings_dataclass_whose_fields_carry_help_and_bounds(cls):
    assert issubclass(cls, Settings) and dataclasses.is_dataclass(cls)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
        assert {"lo", "hi", "above", "choices"} <= set(f.metadata), f"{cls.__name__}.{f.name} is not a setting()"
    cls()  # the defaults are valid


@pytest.mark.parametrize("make, message", [
    (lambda: DecodingConfig(beam_size=21), "--beam-size must be between 1 and 20, not 21"),
    (lambda: DecodingConfig(max_len=101), "--max-len must be between 1 and 100, not 101"),
    (lambda: DecodingConfig(beam_size="3"), "--beam-size must be a whole number, not '3'"),
    (lambda: DecodingConfig(length_penalty=float("nan")), "--length-penalty must be a finite number, not nan"),
    (lambda: ModelConfig(grid=0), "--grid must be between 1 and 32, not 0"),
    (lambda: ModelConfig(vocab_size=-1), "ModelConfig.vocab_size must be between 0 and 1000000, not -1"),
    (lambda: RunConfig(threads=max_threads() + 1), f"--threads must be between 0 and {max_threads()}, not"),
    (lambda: TrainConfig(epochs=0), "--epochs must be at least 1, not 0"),
    (lambda: TrainConfig(lr_decay=1.5), "--lr-decay must be greater than 0 and at most 1, not 1.5"),
    (lambda: SCSTConfig(baseline="best"), "--baseline must be one of mean, greedy, not 'best'"),
    (lambda: SCSTConfig(samples=1), "--baseline mean needs at least 2 --samples"),
    (lambda: LearnConfig(held_out=0.9), "--held-out must be between 0 and 0.5, not 0.9"),
    (lambda: LearnConfig(train="all"), "--train must be one of decoder, language, words, not 'all'"),
    (lambda: FindConfig(top=0), "--top must be at least 1, not 0"),
    (lambda: FindConfig(shortlist=2.5), "--shortlist must be a whole number, not 2.5"),
    (lambda: FindConfig(prior_weight=101), "--prior-weight must be between 0 and 100, not 101"),
    (lambda: RayJobConfig(shard_size=0), "--ray-shard-size must be between 1 and 100000, not 0"),
    (lambda: RayJobConfig(worker_gpus=-0.5), "--ray-worker-gpus must be -1 (auto) or between 0 and 64, not -0.5"),
    (lambda: ImagineConfig(n=9), "--n must be between 1 and 8, not 9"),
    (lambda: ImagineConfig(size=100),
     "--size must be 0 (the model's own) or a multiple of 8 between 64 and 2048, not 100"),
    (lambda: ImagineConfig(steps=201), "--steps must be 0 (the model's usual) or between 1 and 200, not 201"),
    (lambda: TagConfig(threshold=1.5), "TagConfig.threshold must be between 0 and 1, not 1.5"),
    (lambda: TagConfig(top_k=-1), "TagConfig.top_k must be at least 0, not -1"),
    (lambda: ListOptions(min_confidence=1.5), "--min-confidence must be between 0 and 1, not 1.5"),
    (lambda: ListOptions(max_confidence="0.5"), "--max-confidence must be a number, not '0.5'"),
    (lambda: ListOptions(sort="size"), "--sort must be '' (the order of the command) or one of relevance"),
    (lambda: StudioConfig(max_upload_mb=0), "--max-upload-mb must be greater than 0 and at most 1048576, not 0"),
])
def test_a_value_out_of_range_is_refused_when_the_config_is_made_naming_the_setting_and_its_range(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value) == message or str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_special_values_and_changes_keep_being_checked():
    assert ImagineConfig(steps=0, guidance=-1.0, size=0).size == 0  # "the model's own" values are allowed
    assert RayJobConfig(worker_gpus=-1).worker_gpus == -1
    assert ListOptions().keywords()["min_confidence"] is None  # no filter: None, a number otherwise (not text)
    assert ListOptions(min_confidence=0.5).keywords()["min_confidence"] == 0.5
    with pytest.raises(SettingError, match="--beam-size must be between 1 and 20, not 0"):
        DecodingConfig().replace(beam_size=0)
    cfg = TrainConfig()
    cfg.epochs = 0  # a mutable config changed after it was made is checked again by validate()
    with pytest.raises(SettingError, match="--epochs must be at least 1"):
        cfg.validate()


def test_flags_take_help_bounds_and_choices_from_the_same_metadata():
    @dataclasses.dataclass(frozen=True)
    class Knobs(Settings):
        depth: int = setting(3, "how deep", lo=2, hi=5)
        mode: str = setting("a", "which mode", choices=("a", "b"))

    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, Knobs)
    help_text = parser.format_help()
    assert "how deep (between 2 and 5; default: 3)" in " ".join(help_text.split())
    assert "{a,b}" in help_text
    assert config_from_args(Knobs, parser.parse_args(["--depth", "4"])) == Knobs(depth=4)
    with pytest.raises(SettingError, match="--depth must be between 2 and 5, not 6"):
        config_from_args(Knobs, parser.parse_args(["--depth", "6"]))


def _option(parser, command: str, flag: str):
    for word in command.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize("command, flag, cls, name", [
    ("caption", "--beam-size", DecodingConfig, "beam_size"), ("caption", "--max-len", DecodingConfig, "max_len"),
    ("train", "--epochs", TrainConfig, "epochs"), ("train", "--grid", ModelConfig, "grid"),
    ("scst", "--max-sample-len", SCSTConfig, "max_sample_len"), ("learn", "--held-out", LearnConfig, "held_out"),
    ("find", "--top", FindConfig, "top"), ("caption", "--ray-shard-size", RayJobConfig, "shard_size"),
    ("imagine", "--size", ImagineConfig, "size"), ("gallery list", "--min-confidence", ListOptions, "min_confidence"), ("studio", "--max-upload-mb", StudioConfig, "max_upload_mb"),
])
def test_the_cli_help_shows_each_settings_bounds_from_its_metadata(command, flag, cls, name):
    action = _option(build_parser(), command, flag)
    meta = cls.__dataclass_fields__[name].metadata
    assert meta["help"] in action.help and allowed(meta) in action.help, action.help


@pytest.mark.parametrize("argv, message", [
    (["caption", "x.jpg", "--beam-size", "21"], "--beam-size must be between 1 and 20, not 21"),
    (["caption", "x.jpg", "--max-len", "0"], "--max-len must be between 1 and 100, not 0"),
    (["caption", "x.jpg", "--threads", str(max_threads() + 1)], f"--threads must be between 1 and {max_threads()}"),
    (["studio", "--max-upload-mb", "0"], "--max-upload-mb must be greater than 0"),
])
def test_an_out_of_range_flag_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_the_studio_offers_exactly_the_librarys_beam_and_length_range(tiny_model_dir, tmp_path):
    import gradio as gr

    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio

    assert (MAX_BEAM, MAX_LEN) == (DecodingConfig.bounds("beam_size").hi, DecodingConfig.bounds("max_len").hi)
    assert (MAX_BEAM, MAX_LEN) == (20, 100)
    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path / "g"))
    assert studio.max_len_limit == 100  # not max(50, the model's default)
    demo = studio.build()
    sliders = [b for b in demo.blocks.values() if isinstance(b, gr.Slider)]
    beams = [s for s in sliders if s.label == "Beam size"]
    lengths = [s for s in sliders if s.label == "Maximum caption length (words)"]
    assert len(beams) == 2 and len(lengths) == 2  # the Caption tab's and the Video tab's
    assert {(s.minimum, s.maximum) for s in beams} == {tuple(DecodingConfig.bounds("beam_size"))}
    assert {(s.minimum, s.maximum) for s in lengths} == {tuple(DecodingConfig.bounds("max_len"))}


def test_the_studio_names_its_length_setting_max_len_like_the_library(tiny_model_dir, tmp_path):
    from PIL import Image

    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio

    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path / "g"))
    studio.upload_dir = None
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "p.png")
    result, _ = studio.photos.caption([str(tmp_path / "p.png")], 20, 5)
    assert result["beam_size"] == 20 and result["max_len"] == 5 and "max_length" not in result


def test_the_upload_limit_is_defined_once_and_importable_without_gradio():
    import subprocess
    import sys

    code = ("import sys; from captioner.cli import studio; from captioner.studio.config import DEFAULT_MAX_UPLOAD_MB;"
            "print(DEFAULT_MAX_UPLOAD_MB, 'gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["50.0", "False"], out.stderr
    import inspect

    from captioner.studio import app

    assert app.DEFAULT_MAX_UPLOAD_MB is DEFAULT_MAX_UPLOAD_MB
    assert inspect.signature(app.launch).parameters["max_upload_mb"].default == DEFAULT_MAX_UPLOAD_MB


def test_max_threads_is_written_once():
    import inspect

    from captioner.cli import caption, train
    from captioner.training import config as training_config

    assert RunConfig.__dataclass_fields__["threads"].metadata["hi"] is max_threads
    assert training_config.max_threads is train.max_threads is max_threads
    assert "cpu_count" not in inspect.getsource(caption) and "cpu_count" not in inspect.getsource(training_config)


def test_the_shipped_decoding_json_and_config_json_still_load():
    model, decoding = load_configs(DEFAULT_MODEL_DIR)
    saved = json.loads((DEFAULT_MODEL_DIR / "decoding.json").read_text())
    assert {k: getattr(decoding, k) for k in saved} == saved
    assert dataclasses.asdict(model) == json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert DecodingConfig.load(DEFAULT_MODEL_DIR / "decoding.json") == decoding


def test_an_old_decoding_json_loads_and_resaves_in_the_same_format(tmp_path):
    # a decoding.json written before the grounding, bank and support settings existed
    old = {"beam_size": 5, "max_len": 30, "length_penalty": 0.75, "no_repeat_ngram": 2}
    (tmp_path / "decoding.json").write_text(json.dumps(old))
    cfg = DecodingConfig.load(tmp_path / "decoding.json")
    assert cfg == DecodingConfig(**old)
    cfg.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == dataclasses.asdict(cfg)
    assert DecodingConfig.load(tmp_path / "again.json") == cfg


def test_a_bad_saved_value_names_the_file_and_its_key(tmp_path, tiny_model_dir):
    (tmp_path / "decoding.json").write_text(json.dumps({"beam_size": 30}))
    with pytest.raises(ConfigError, match=r"decoding.json: beam_size must be between 1 and 20, not 30"):
        DecodingConfig.load(tmp_path / "decoding.json")
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "hidden_dim": 10**7}))
    with pytest.raises(ConfigError, match=r"config.json: hidden_dim must be between 1 and 4096, not 10000000"):
        load_configs(folder)
