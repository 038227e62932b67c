"""Images from captions: `captioner imagine` end to end on a tiny randomly initialised diffusers pipeline
built from config in the test (no download, no network), and the CLI without the extra or a model."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import gradio as gr
import pytest

from captioner.cli.main import main
from captioner.imagine import ImagineConfig, ImagineError, model_folder
from captioner.imagine.matching import PromptMatch
from captioner.imagine.run import slug


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table (the tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_tiny_pipeline(folder) -> None:
    """A Stable Diffusion pipeline with a few thousand random weights, saved in diffusers format.
    The CLIP tokenizer is built offline from a byte-level vocabulary written here (no merges)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tok_dir = folder / "tokenizer-src"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt"),
                              model_max_length=16)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                norm_num_groups=2, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=2, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=1,
        vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
        max_position_embeddings=16))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder / "tiny-sd")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t2i")
    build_tiny_pipeline(folder)
    return folder / "tiny-sd"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    calls = []

    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            calls.append(address)
            raise OSError(f"network access attempted: {address}")
        return real_connect(self, address, *args, **kwargs)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(socket.socket(), a[0]))
    return calls


@pytest.mark.extras("imagine")
def test_imagine_end_to_end_on_a_tiny_pipeline(tiny_model, tiny_model_dir, tmp_path, capsys, no_network):
    out = tmp_path / "out"
    code = main(["imagine", "a dog runs on the grass", "--t2i-model", str(tiny_model), "--n", "2",
                 "--steps", "2", "--size", "64", "--out", str(out), "--json", "--model", str(tiny_model_dir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == 2
    assert [r["seed"] for r in records] == [0, 1]
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["a-dog-runs-on-the-grass-s0.png", "a-dog-runs-on-the-grass-s1.png"]
    from PIL import Image

    from captioner.metadata import read_caption
    for record, path in zip(records, files):
        assert record["file"] == str(path)
        with Image.open(path) as img:
            assert img.size == (64, 64) and img.format == "PNG"
        assert read_caption(path)["xmp"] == "a dog runs on the grass"  # the prompt travels with the file
        assert record["caption"] and isinstance(record["caption"], str)
        # a log-likelihood per word: negative, and the model's own caption is at least nearly as likely
        assert record["prompt_log_likelihood"] < 0
        assert record["caption_log_likelihood"] < 0
        assert record["caption_log_likelihood"] > record["prompt_log_likelihood"] - 0.5
        assert record["unknown_words"] == []
    # the figures are the captioner's own: recomputed from the saved (lossless) files, they agree
    from captioner.pipeline import Captioner
    from captioner.retrieval.prompt import prompt_likelihood

    captioner = Captioner.load(tiny_model_dir)
    for record, path in zip(records, files):
        assert prompt_likelihood(captioner, path, "a dog runs on the grass") == \
            pytest.approx(record["prompt_log_likelihood"], abs=1e-3)
        assert captioner.caption(path).caption == record["caption"]
    assert no_network == []
    # a second run never overwrites the first run's files
    assert main(["imagine", "a dog runs on the grass", "--t2i-model", str(tiny_model), "--steps", "1",
                 "--size", "64", "--out", str(out), "--model", str(tiny_model_dir)]) == 0
    text = capsys.readouterr().out
    assert "a-dog-runs-on-the-grass-s0-2.png" in text and "prompt log-likelihood" in text
    assert len(list(out.iterdir())) == 3


@pytest.mark.extras("imagine")
def test_same_seed_same_image(tiny_model):
    import numpy as np

    from captioner.imagine import TextToImage

    t2i = TextToImage(tiny_model)
    config = ImagineConfig(n=1, steps=1, size=64, seed=7)
    a, b = t2i.generate("a cat", config)[0], t2i.generate("a cat", config)[0]
    c = t2i.generate("a cat", ImagineConfig(n=1, steps=1, size=64, seed=8))[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(ImagineError, match="prompt is empty"):
        t2i.generate("   ", config)


@pytest.mark.extras("imagine")
def test_a_folder_with_only_fp16_files_loads_and_turbo_defaults_apply(tiny_model, tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    from captioner.imagine import TextToImage

    folder = tmp_path / "sd-turbo-fp16"
    StableDiffusionPipeline.from_pretrained(tiny_model, local_files_only=True).save_pretrained(folder, variant="fp16")
    assert all(".fp16." in p.name for p in folder.glob("*/*.safetensors"))
    t2i = TextToImage(folder)
    assert ImagineConfig().for_model(t2i.folder).steps == 1
    assert len(t2i.generate("a dog", ImagineConfig(size=64))) == 1
    # --out that is a file is refused before anything loads
    (tmp_path / "taken").write_text("x")
    assert main(["imagine", "a dog", "--t2i-model", str(folder), "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.extras("imagine")
def test_unknown_words_are_reported_and_not_scored(tiny_model, tiny_model_dir, tmp_path, capsys):
    code = main(["imagine", "a zyxxqv dog", "--t2i-model", str(tiny_model), "--steps", "1", "--size", "64",
                 "--out", str(tmp_path), "--json", "--model", str(tiny_model_dir)])
    assert code == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["unknown_words"] == ["zyxxqv"]
    assert record["prompt_log_likelihood"] < 0


@pytest.mark.extras("imagine")
def test_missing_or_wrong_model_folder_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CAPTIONER_T2I_MODEL", raising=False)
    assert main(["imagine", "a dog"]) == 2
    assert "--t2i-model DIR" in capsys.readouterr().err
    assert main(["imagine", "a dog", "--t2i-model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no model_index.json" in err and err.count("\n") == 1
    (tmp_path / "model_index.json").write_text("{not json")
    assert main(["imagine", "a dog", "--t2i-model", str(tmp_path)]) == 2
    assert "could not be loaded" in capsys.readouterr().err


def test_bad_settings_are_refused():
    with pytest.raises(Exception, match="--n must be between"):
        ImagineConfig(n=0).check()
    with pytest.raises(Exception, match="multiple of 8"):
        ImagineConfig(size=100).check()
    assert ImagineConfig().for_model("/m/sd-turbo").steps == 1
    assert ImagineConfig().for_model("/m/sd-turbo").guidance == 0.0
    assert ImagineConfig().for_model("/m/stable-diffusion-v1-5").steps == 25
    assert ImagineConfig(steps=3, guidance=2.0).for_model("/m/sd-turbo").steps == 3
    with pytest.raises(ImagineError, match="does not exist"):
        model_folder("/nonexistent/folder")


def test_match_figures():
    m = PromptMatch("a dog runs", -2.0, -1.0, ["zyx"])
    assert m.word_probability == pytest.approx(0.1353, abs=1e-4)
    assert m.relative == pytest.approx(0.3679, abs=1e-4)
    assert PromptMatch(None, None, None).to_dict()["relative_to_caption"] is None
    assert slug("A dog, running!") == "a-dog-running" and slug("!!!") == "image"


def test_without_diffusers_captioner_imports_and_the_cli_names_the_pip_command(tmp_path):
    """diffusers and transformers hidden: importing captioner works, `captioner imagine` says what to install."""
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('diffusers', 'transformers'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n in ('diffusers', 'transformers') else real(n, *a)\n"
        "import captioner, captioner.imagine, captioner.metadata\n"
        "from captioner.cli.main import main\n"
        f"sys.exit(main(['imagine', 'a dog', '--t2i-model', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert 'pip install -e ".[imagine]"' in proc.stderr
    assert proc.stderr.count("\n") == 1


# ------------------------------------------------------------------ the studio's Imagine tab
class _Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, value, desc=None, **kwargs):
        self.calls.append((value, desc))


def _studio(tiny_model_dir, t2i_model=None):
    from types import SimpleNamespace

    from captioner.pipeline import Captioner

    return SimpleNamespace(captioner=Captioner.load(tiny_model_dir), t2i_model=t2i_model)


def test_studio_tab_without_a_model_explains_how_to_enable_it(tiny_model_dir, monkeypatch, tmp_path):
    """With the extra installed or not: the tab names what is missing (the model folder; then the packages)."""
    from captioner.studio import imagine_tab
    from captioner.studio.imagine_tab import ImagineTab, build_imagine_tab

    monkeypatch.delenv("CAPTIONER_T2I_MODEL", raising=False)
    monkeypatch.setattr("captioner.imagine.t2i.missing_packages", lambda: [])  # as where [imagine] is installed
    studio = _studio(tiny_model_dir)
    with gr.Blocks(analytics_enabled=False) as demo, gr.Tabs():
        assert build_imagine_tab(studio) == []
    texts = [getattr(b, "value", "") or "" for b in demo.blocks.values()]
    assert any("--t2i-model DIR" in t and "Nothing is downloaded" in t for t in texts)
    assert not any(isinstance(b, gr.Gallery) for b in demo.blocks.values())
    with pytest.raises(gr.Error, match="t2i-model"):
        studio.imagine.generate("a dog", 1, 1, 0, progress=_Progress())
    assert "no model_index.json" in ImagineTab(studio, tmp_path).unavailable()
    monkeypatch.setattr("captioner.imagine.t2i.missing_packages", lambda: ["diffusers"])
    assert 'pip install -e ".[imagine]"' in ImagineTab(studio, tmp_path).unavailable()
    assert imagine_tab.MAX_STUDIO_IMAGES >= 1


@pytest.mark.extras("imagine")
def test_studio_tab_generates_captions_back_and_scores(tiny_model, tiny_model_dir, no_network):
    from captioner.studio.imagine_tab import build_imagine_tab

    studio = _studio(tiny_model_dir, t2i_model=tiny_model)
    with gr.Blocks(analytics_enabled=False) as demo, gr.Tabs():
        heavy = build_imagine_tab(studio)
    assert len(heavy) == 1 and isinstance(heavy[0], gr.Gallery)
    assert "imagine" in {fn.api_name for fn in demo.fns.values()}
    progress = _Progress()
    gallery, table, result = studio.imagine.generate("a dog runs on <the> grass", "99", 1, -5, progress=progress)
    assert len(gallery) == 4  # asked for 99: clamped to the studio's limit
    assert [img["seed"] for img in result["images"]] == [0, 1, 2, 3]  # a negative seed is clamped to 0
    for (image, label), record in zip(gallery, result["images"]):
        assert label == record["caption"] and image.size == (record["width"], record["height"])
        assert record["prompt_log_likelihood"] < 0 and record["unknown_words"] == []
    assert "&lt;the&gt;" in table and "<the>" not in table
    assert progress.calls[-1][0] == 1.0
    with pytest.raises(gr.Error, match="Describe"):
        studio.imagine.generate("   ", 1, 1, 0, progress=_Progress())
    assert no_network == []
