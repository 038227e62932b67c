"""The one training loop: a resumed run equals an uninterrupted one bit for bit (cross-entropy, with and
without fine-tuned backbone blocks, and SCST), DistributedDataParallel keeps the fine-tuned encoder
blocks identical across ranks, and `captioner train`/`scst` refuse what a user can get wrong with one
line and exit code 2 before writing anything."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioner import cli
from captioner.cli.main import build_parser
from captioner.data import load_dataset
from captioner.data.features import FeatureCache
from captioner.decoding.config import DecodingConfig
from captioner.model.config import ModelConfig
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab
from captioner.training.config import SCSTConfig, TrainConfig
from synthetic_shapes import write_flickr_style

ARCH = dict(backbone="efficientnet-lite2", input_size=128, grid=4, embed_dim=32, attention_dim=32, hidden_dim=32,
            dropout=0.3)
TRAIN = dict(batch_size=16, lr=3e-3, encoder_lr=1e-3, min_word_freq=1, val_beam_size=1, val_images=4, threads=1,
             device="cpu", patience=5)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """48 training, 8 validation images; a cache of whole-trunk features and one of the trunk before its last block."""
    root = tmp_path_factory.mktemp("tiny_shapes")
    write_flickr_style(root, n_train=48, n_val=8, n_test=4)
    common = ["--data", str(root), "--backbone", "efficientnet-lite2", "--input-size", "128", "--batch-size", "32"]
    assert cli.main(["prepare", "--cache", str(root / "cache"), "--grid", "4"] + common) == 0
    assert cli.main(["prepare", "--cache", str(root / "before1"), "--before-blocks", "1"] + common) == 0
    return root


def _train(root: Path, out: Path, epochs: int, fine_tune: int, resume: bool = False) -> dict:
    from captioner.training.cross_entropy import train

    cache = FeatureCache(root / ("before1" if fine_tune else "cache"))
    return train(load_dataset(root), out, ModelConfig(**ARCH, fine_tune_blocks=fine_tune),
                 TrainConfig(epochs=epochs, **TRAIN), cache=cache, resume=resume)


def _flat(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _flat(v, f"{path}/{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _flat(v, f"{path}/{i}")
    else:
        yield path, x


def assert_same_run(a: Path, b: Path) -> None:
    """Same weights, optimizer, state and RNGs in the final checkpoints, and the same log but for the timings."""
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    assert ca.keys() == cb.keys()
    fa, fb = dict(_flat(ca)), dict(_flat(cb))
    assert fa.keys() == fb.keys()
    differ = [k for k in fa if not (torch.equal(fa[k], fb[k]) if torch.is_tensor(fa[k]) else fa[k] == fb[k])]
    assert not differ, differ[:10]
    rows = [[r.rsplit(",", 1)[0] for r in (d / "log.csv").read_text().splitlines()] for d in (a, b)]
    assert rows[0] == rows[1]


@pytest.mark.parametrize("fine_tune", [0, 1], ids=["decoder", "fine-tuned-block"])
def test_cross_entropy_resume_is_bit_identical(tiny_data, tmp_path, fine_tune):
    whole, split = tmp_path / "whole", tmp_path / "split"
    s1 = _train(tiny_data, whole, 2, fine_tune)
    _train(tiny_data, split, 1, fine_tune)
    s2 = _train(tiny_data, split, 2, fine_tune, resume=True)
    assert s1["epochs"] == s2["epochs"] == 2 and s1["best_val_bleu4"] == s2["best_val_bleu4"]
    assert_same_run(whole, split)
    ck = torch.load(whole / "checkpoint.pt", weights_only=True)
    assert {"decoder", "optimizer", "state", "rng", "torch_rng"} <= set(ck) and ("encoder" in ck) == bool(fine_tune)
    assert ck["state"]["epoch"] == 2 and ck["state"]["best_bleu4"] == s1["best_val_bleu4"]


@pytest.fixture(scope="module")
def start_model(tiny_data, tmp_path_factory) -> Path:
    """An untrained model for the tiny data (SCST only needs one to start from)."""
    ds = load_dataset(tiny_data)
    vocab = Vocab.build((c for i in ds.split("train") for c in ds.captions[i]), 1)
    torch.manual_seed(3)
    model = CaptionModel(ModelConfig(**ARCH, vocab_size=len(vocab)), vocab, with_encoder=False,
                         decoding=DecodingConfig(max_len=12))
    folder = tmp_path_factory.mktemp("start") / "model"
    model.save(folder)
    return folder


@pytest.mark.parametrize("baseline", ["mean", "greedy"])
def test_scst_resume_is_bit_identical(tiny_data, start_model, tmp_path, baseline):
    from captioner.training.scst import scst_train

    ds, cache = load_dataset(tiny_data), FeatureCache(tiny_data / "cache")

    def run(out, epochs, resume=False):
        cfg = SCSTConfig(epochs=epochs, images_per_batch=16, samples=3, baseline=baseline, lr=1e-3,
                         sample_dropout=baseline == "greedy", max_sample_len=12, val_images=4, threads=1, device="cpu")
        return scst_train(ds, cache, start_model, out, cfg, resume=resume)

    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run(whole, 2)["steps"] == 6  # 48 images, 16 a batch: 3 steps an epoch, validated after each epoch
    run(split, 1)
    assert run(split, 2, resume=True)["steps"] == 6
    assert_same_run(whole, split)


def _ddp_worker(rank: int, world: int, root: str, init_file: str, out: str) -> None:
    import torch.distributed as dist

    from captioner.training.cross_entropy import CrossEntropyJob
    from captioner.training.loop import run_training

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        job = CrossEntropyJob(load_dataset(root), ModelConfig(**ARCH, fine_tune_blocks=1),
                              TrainConfig(epochs=1, **TRAIN), cache=FeatureCache(Path(root) / "before1"))
        summary = run_training(job, Path(out) / "run")
        state = {"decoder": job.model.decoder.state_dict(), "encoder": job.model.encoder.tuned_state(), **summary}
        torch.save(state, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_fine_tuning_keeps_every_rank_identical(tiny_data, tmp_path):
    """Two processes (gloo on CPU), each on its half of the captions: after an epoch of steps both hold the
    same decoder and the same fine-tuned encoder block, which did change."""
    import torch.multiprocessing as mp

    from captioner.model.encoder import Encoder

    mp.spawn(_ddp_worker, args=(2, str(tiny_data), str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["epochs"] == r1["epochs"] == 1
    for part in ("decoder", "encoder"):
        assert r0[part].keys() == r1[part].keys() and r0[part]
        differ = [k for k in r0[part] if not torch.equal(r0[part][k], r1[part][k])]
        assert not differ, (part, differ[:5])
    pretrained = Encoder("efficientnet-lite2", 4, fine_tune_blocks=1).tuned_state()
    changed = [k for k, v in r0["encoder"].items() if v.is_floating_point() and not torch.equal(v, pretrained[k])]
    assert changed and all("running" not in k for k in changed)
    assert (tmp_path / "run" / "best" / "encoder.safetensors").exists()


# ---------------------------------------------------------------- the command line


def test_flags_come_from_the_dataclasses():
    p = build_parser()
    args = p.parse_args(["train", "--data", "d", "--out", "o"])
    assert TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__}) == TrainConfig()
    assert TrainConfig().patience == 3  # what `--patience` always defaulted to
    for f, v in ModelConfig().__dict__.items():
        if hasattr(args, f):
            assert getattr(args, f) == v, f
    args = p.parse_args(["scst", "--data", "d", "--cache", "c", "--init-from", "m", "--out", "o"])
    assert SCSTConfig(**{k: getattr(args, k) for k in SCSTConfig.__dataclass_fields__}) == SCSTConfig()
    # the flag names of before stay
    args = p.parse_args(["train", "--data", "d", "--out", "o", "--patience", "7", "--keep-epochs", "--lr-patience", "2",
                         "--fine-tune-blocks", "2", "--name", "x", "--val-images", "5"])
    assert (args.patience, args.keep_epochs, args.lr_patience, args.fine_tune_blocks, args.name) == (7, True, 2, 2, "x")
    args = p.parse_args(["scst", "--data", "d", "--cache", "c", "--init-from", "m", "--out", "o", "--baseline", "greedy",
                         "--sample-dropout", "--samples", "2", "--images-per-batch", "9", "--max-sample-len", "16"])
    assert (args.baseline, args.sample_dropout, args.samples, args.images_per_batch) == ("greedy", True, 2, 9)


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1, not 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["--lr", "0"], "--lr must be greater than 0, not 0.0"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--threads", "100000"], "--threads must be between 0 and"),
    (["--lr-decay", "1.5"], "--lr-decay must be greater than 0 and at most 1, not 1.5"),
    (["--val-beam-size", "0"], "--val-beam-size must be between 1 and 20, not 0"),
    (["--grid", "0"], "grid must be between 1 and 32, not 0"),
    (["--device", "tpu"], "device"),
])
def test_train_refuses_bad_values_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(tmp_path / "nothing"), "--out", str(out)] + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--images-per-batch", "0"], "--images-per-batch must be at least 1"),
    (["--samples", "1"], "--baseline mean needs at least 2 --samples"),
    (["--max-sample-len", "500"], "--max-sample-len must be between 1 and 100"),
])
def test_scst_refuses_bad_values_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert cli.main(["scst", "--data", str(tmp_path), "--cache", str(tmp_path), "--init-from", str(tmp_path),
                     "--out", str(out)] + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "captioner"] + args, capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def bad_inputs(tiny_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("not a dataset")
    (d / "empty").mkdir()
    (d / "other.json").write_text(json.dumps({"something": "else"}))
    (d / "broken.json").write_text("{not json")
    shutil.copytree(tiny_data / "cache", d / "incomplete")
    (d / "incomplete" / "progress.json").write_text(json.dumps({"done": 3}))
    return d


CASES = {
    "missing-data": (lambda r, b: ["--data", str(b / "nope")], "no such file or folder"),
    "data-is-a-text-file": (lambda r, b: ["--data", str(b / "notes.txt")], "expected a Flickr8k folder"),
    "data-folder-without-flickr8k": (lambda r, b: ["--data", str(b / "empty")], "expected a Flickr8k folder"),
    "json-not-karpathy": (lambda r, b: ["--data", str(b / "other.json"), "--image-dir", str(b)],
                          "not in the expected format"),
    "json-broken": (lambda r, b: ["--data", str(b / "broken.json"), "--image-dir", str(b)],
                    "not in the expected format"),
    "missing-init-from": (lambda r, b: ["--data", str(r), "--init-from", str(b / "no-model")], "--init-from"),
    "init-from-not-a-model": (lambda r, b: ["--data", str(r), "--init-from", str(b / "empty")], "not a model folder"),
    "unknown-backbone": (lambda r, b: ["--data", str(r), "--backbone", "nonet"], "unknown backbone 'nonet'"),
    "missing-cache": (lambda r, b: ["--data", str(r), "--cache", str(b / "no-cache")], "is not a feature cache"),
    "incomplete-cache": (lambda r, b: ["--data", str(r), "--cache", str(b / "incomplete"), "--input-size", "128",
                                       "--grid", "4"], "is incomplete"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_user_errors_are_one_line(tiny_data, bad_inputs, tmp_path, case):
    make, message = CASES[case]
    out = tmp_path / "run"
    p = run_cli(["train", "--out", str(out), "--epochs", "1", "--device", "cpu"] + make(tiny_data, bad_inputs))
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert message in p.stderr
    assert not out.exists()


def test_scst_user_errors_are_one_line(tiny_data, bad_inputs, start_model, tmp_path):
    out = tmp_path / "run"
    base = ["scst", "--out", str(out), "--device", "cpu"]
    for args, message in [
        (["--data", str(tiny_data), "--cache", str(tiny_data / "cache"), "--init-from", str(bad_inputs / "x")],
         "--init-from"),
        (["--data", str(bad_inputs / "notes.txt"), "--cache", str(tiny_data / "cache"), "--init-from", str(start_model)],
         "expected a Flickr8k folder"),
        (["--data", str(tiny_data), "--cache", str(bad_inputs / "incomplete"), "--init-from", str(start_model)],
         "is incomplete"),
    ]:
        p = run_cli(base + args)
        assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
        assert p.stderr.startswith("error: ") and message in p.stderr, p.stderr
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--backbone", "nonet"], "unknown backbone 'nonet'"),
    (["--before-blocks", "40"], "--before-blocks must be between 0 and 16"),
    (["--model", "nowhere"], "--model nowhere: no such folder"),
])
def test_prepare_refuses_bad_values_before_writing(tiny_data, tmp_path, capsys, flags, message):
    cache = tmp_path / "cache"
    assert cli.main(["prepare", "--data", str(tiny_data), "--cache", str(cache)] + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not cache.exists()
