"""The whole pipeline learns: a model trained on a synthetic shapes task captions unseen images correctly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioner.core import cli
from captioner.core.decoder import Decoder
from captioner.core.pipeline import Captioner
from captioner.core.train import caption_loss, pad_batch

from synthetic_shapes import write_flickr_style

TRAIN_ARGS = ["--backbone", "efficientnet-lite2", "--input-size", "128", "--grid", "4", "--embed-dim", "64",
              "--attention-dim", "64", "--hidden-dim", "128", "--dropout", "0.1", "--min-word-freq", "1",
              "--batch-size", "32", "--lr", "3e-3", "--val-beam-size", "1", "--threads", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    captions = write_flickr_style(root, n_train=480, n_val=40, n_test=40)
    cache = root / "cache"
    assert cli.main(["prepare", "--data", str(root), "--cache", str(cache), "--backbone", "efficientnet-lite2",
                     "--input-size", "128", "--grid", "4", "--batch-size", "64"]) == 0
    return root, cache, captions


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    dec = Decoder(20, 8, embed_dim=16, hidden_dim=16, attention_dim=16, dropout=0.0)
    feats = torch.randn(8, 4, 8)
    caps, lengths = pad_batch([[1] + list(torch.randint(4, 20, (n,)).tolist()) + [2] for n in range(3, 11)], 0)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        logp, alphas = dec(feats, caps, lengths)
        loss = caption_loss(logp, alphas, caps, lengths, 0, 0.0, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # it memorises the batch


@pytest.mark.slow
def test_trains_on_synthetic_shapes_and_captions_unseen_images(shapes_data, tmp_path):
    root, cache, captions = shapes_data
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(root), "--cache", str(cache), "--out", str(out), "--epochs", "25",
                     "--patience", "25"] + TRAIN_ARGS) == 0
    log = (out / "log.csv").read_text().splitlines()
    first_loss, last_loss = float(log[1].split(",")[1]), float(log[-1].split(",")[1])
    assert last_loss < 0.5 * first_loss
    captioner = Captioner.load(out / "best")
    test_ids = (root / "Flickr_8k.testImages.txt").read_text().split()
    results = list(captioner.caption_many([root / "images" / i for i in test_ids], beam_size=3))
    exact = sum(r.caption == captions[i] for r, i in zip(results, test_ids)) / len(test_ids)
    words_right = sum(a == b for r, i in zip(results, test_ids) for a, b in zip(r.caption.split(), captions[i].split()))
    assert exact >= 0.6, [(r.caption, captions[i]) for r, i in zip(results, test_ids)][:10]
    assert words_right / sum(len(captions[i].split()) for i in test_ids) >= 0.85
    # evaluation through the CLI on the same model agrees
    scores = cli.evaluate_model(out / "best", str(root), "test", 3, use_java=False)["scores"]
    assert scores["bleu4"] >= 60


@pytest.mark.slow
def test_resume_continues_from_checkpoint(shapes_data, tmp_path):
    root, cache, _ = shapes_data
    out = tmp_path / "run"
    args = ["train", "--data", str(root), "--cache", str(cache), "--out", str(out), "--val-images", "10"] + TRAIN_ARGS
    assert cli.main(args + ["--epochs", "1"]) == 0
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 0
    epochs = [l.split(",")[0] for l in (out / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["state"]["epoch"] == 2


@pytest.mark.slow
def test_distributed_training_with_gloo_two_processes(shapes_data, tmp_path):
    root, cache, _ = shapes_data
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "captioner.core.cli", "train", "--data", str(root), "--cache", str(cache), "--out", str(out),
           "--epochs", "1", "--val-images", "10"] + TRAIN_ARGS[:-4] + ["--threads", "1", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "best" / "decoder.safetensors").exists()
    assert json.loads(proc.stdout.strip().splitlines()[-1])["epochs"] == 1


@pytest.mark.slow
def test_scst_fine_tunes_a_trained_model_and_resumes(shapes_data, tmp_path):
    root, cache, _ = shapes_data
    xe = tmp_path / "xe"
    assert cli.main(["train", "--data", str(root), "--cache", str(cache), "--out", str(xe), "--epochs", "2",
                     "--val-images", "10"] + TRAIN_ARGS) == 0
    out = tmp_path / "scst"
    args = ["scst", "--data", str(root), "--cache", str(cache), "--init-from", str(xe / "best"), "--out", str(out),
            "--images-per-batch", "120", "--samples", "4", "--val-every", "2", "--val-images", "10", "--lr", "1e-4",
            "--threads", "2", "--device", "cpu"]
    assert cli.main(args + ["--epochs", "1"]) == 0  # 480 training images: 4 batches, validated after 2 and 4
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 0
    steps = [int(l.split(",")[0]) for l in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6, 8]
    assert (out / "best" / "decoder.safetensors").exists()
    cap = Captioner.load(out / "best")
    assert cap.caption(root / "images" / (root / "Flickr_8k.testImages.txt").read_text().split()[0]).caption
    # a missing cache is refused with a message, not a traceback
    assert cli.main(args[:1] + ["--data", str(root), "--cache", str(tmp_path / "nope"), "--init-from",
                                str(xe / "best"), "--out", str(out)]) == 2
