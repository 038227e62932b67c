"""Shared fixtures: a tiny real model folder (random decoder over the real default backbone)."""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest
import torch

from captioner.decoding.config import DecodingConfig
from captioner.model.config import ModelConfig
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab
from oracles.photos import FLICKR as FLICKR8K

# subprocesses (`python -m captioner ...`) run this checkout's code too, whatever else is installed
SRC = str(Path(__file__).resolve().parents[1] / "src")
os.environ["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])

# the ONNX encoder export cache of the test session stays out of the user's ~/.cache
os.environ.setdefault("CAPTIONER_CACHE_DIR", tempfile.mkdtemp(prefix="captioner-test-cache-"))

#: the optional extras (pyproject's [project.optional-dependencies]) and the modules each brings
EXTRAS = {"imagine": ("diffusers", "transformers"), "scale": ("ray", "pyarrow")}


def pytest_addoption(parser):
    parser.addoption("--require-extras", action="store_true",
                     help="a test marked extras(...) fails instead of skipping when its extra is not installed")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test marked `extras("imagine")` is skipped, with the pip command, where that optional extra is not
    installed; with --require-extras (CI, after installing the extras) it fails instead."""
    for mark in item.iter_markers("extras"):
        for name in mark.args:
            missing = [m for m in EXTRAS[name] if importlib.util.find_spec(m) is None]
            if missing:
                why = f'the [{name}] extra is not installed ({", ".join(missing)}): pip install -e ".[{name}]"'
                if item.config.getoption("--require-extras"):
                    pytest.fail(why, pytrace=False)
                pytest.skip(why)


TINY_WORDS = ["a", "dog", "cat", "runs", "on", "the", "grass", "red", "blue", "ball", "man", "sits"]


def make_tiny_model(folder: Path, seed: int = 0, backbone: str = "efficientnet-lite2") -> Path:
    torch.manual_seed(seed)
    vocab = Vocab(["<pad>", "<start>", "<end>", "<unk>"] + TINY_WORDS)
    cfg = ModelConfig(backbone=backbone, input_size=64, grid=2, embed_dim=16, attention_dim=16, hidden_dim=16,
                      dropout=0.0, vocab_size=len(vocab), name="tiny-test")
    model = CaptionModel(cfg, vocab, decoding=DecodingConfig(max_len=8))
    model.save(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small but complete model folder, loadable by `CaptionModel.load` and `Captioner.load`."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def shipped_captioner():
    """The model shipped in the package (src/captioner/weights/), loaded once for the whole session. Tests read
    it and never change it: other settings go in as arguments or `decoding.replace(...)`."""
    from captioner.pipeline import Captioner

    return Captioner.load()


@pytest.fixture(scope="session")
def flickr8k_dir() -> Path:
    if not (FLICKR8K / "Flickr8k.token.txt").exists():
        pytest.skip(f"the Flickr8k data set is not present at {FLICKR8K} (set $CAPTIONER_DATA to its folder)")
    return FLICKR8K
