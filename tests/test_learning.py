"""The whole pipeline learns: a model trained on a synthetic shapes task captions unseen images correctly."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from captioner import cli
from captioner.evaluation.run import evaluate_model
from captioner.model.decoder import Decoder
from captioner.pipeline import Captioner
from captioner.training.cross_entropy import caption_loss, pad_batch
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
    scores = evaluate_model(out / "best", str(root), "test", beam_size=3, use_java=False)["scores"]
    assert scores["bleu4"] >= 60


@pytest.mark.slow
def test_resume_continues_from_checkpoint(shapes_data, tmp_path):
    root, cache, _ = shapes_data
    out = tmp_path / "run"
    args = ["train", "--data", str(root), "--cache", str(cache), "--out", str(out), "--val-images", "10"] + TRAIN_ARGS
    assert cli.main(args + ["--epochs", "1"]) == 0
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 0
    epochs = [row.split(",")[0] for row in (out / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["state"]["epoch"] == 2


@pytest.mark.slow
def test_distributed_training_with_gloo_two_processes(shapes_data, tmp_path):
    root, cache, _ = shapes_data
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "captioner", "train", "--data", str(root), "--cache", str(cache), "--out", str(out),
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
    steps = [int(row.split(",")[0]) for row in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6, 8]
    assert (out / "best" / "decoder.safetensors").exists()
    cap = Captioner.load(out / "best")
    assert cap.caption(root / "images" / (root / "Flickr_8k.testImages.txt").read_text().split()[0]).caption
    # a missing cache is refused with a message, not a traceback
    assert cli.main(args[:1] + ["--data", str(root), "--cache", str(tmp_path / "nope"), "--init-from",
                                str(xe / "best"), "--out", str(out)]) == 2


@pytest.mark.slow
def test_fine_tuning_the_last_blocks_from_a_before_blocks_cache(shapes_data, tmp_path):
    from safetensors.torch import load_file

    from captioner.data.features import FeatureCache
    from captioner.model.encoder import Encoder
    from captioner.model.folder import CaptionModel

    root, cache, _ = shapes_data
    xe = tmp_path / "xe"
    assert cli.main(["train", "--data", str(root), "--cache", str(cache), "--out", str(xe), "--epochs", "1",
                     "--val-images", "10"] + TRAIN_ARGS) == 0
    before = tmp_path / "before2"
    assert cli.main(["prepare", "--data", str(root), "--cache", str(before), "--backbone", "efficientnet-lite2",
                     "--input-size", "128", "--batch-size", "64", "--before-blocks", "2"]) == 0
    assert FeatureCache(before).meta["before_blocks"] == 2
    ft = tmp_path / "ft"
    base = ["train", "--data", str(root), "--out", str(ft), "--init-from", str(xe / "best"), "--epochs", "1",
            "--val-images", "10", "--fine-tune-blocks", "2", "--encoder-lr", "1e-3"] + TRAIN_ARGS
    # a cache of whole-trunk features cannot feed the fine-tuned blocks: a message, not a traceback
    assert cli.main(base + ["--cache", str(cache)]) == 2
    assert cli.main(base + ["--cache", str(before)]) == 0

    tuned = CaptionModel.load(ft / "best")
    pretrained = Encoder("efficientnet-lite2", 4)
    old, new = pretrained.trunk.state_dict(), tuned.encoder.trunk.state_dict()
    tuned_blocks = ("net._blocks.20.", "net._conv_head", "net._bn1")
    saved = load_file(str(ft / "best" / "encoder.safetensors"))  # only the fine-tuned blocks, float32
    assert saved and all(k.startswith(tuned_blocks) and v.dtype != torch.float16 for k, v in saved.items())
    assert "net._conv_head.weight" in saved and "net._blocks.20._depthwise_conv.weight" in saved
    changed = {k for k in new if new[k].is_floating_point() and not torch.equal(old[k], new[k])}
    assert changed and all(k.startswith(tuned_blocks) for k in changed)
    assert not any("running" in k for k in changed)  # batch-norm statistics stay frozen

    # the features of the fine-tuned model: from the before-blocks cache (fast) or from the images
    fast, slow = tmp_path / "ft-fast", tmp_path / "ft-slow"
    assert cli.main(["prepare", "--data", str(root), "--cache", str(fast), "--model", str(ft / "best"),
                     "--from-cache", str(before)]) == 0
    assert cli.main(["prepare", "--data", str(root), "--cache", str(slow), "--model", str(ft / "best")]) == 0
    a, b = FeatureCache(fast), FeatureCache(slow)
    assert a.meta["encoder"] == b.meta["encoder"] == tuned.encoder.fingerprint()
    fa, fb = a.load(a.ids[:20]).float(), b.load(a.ids[:20]).float()
    assert (fa - fb).abs().max() <= 0.02 * fb.abs().max()

    # SCST on the fine-tuned model takes only the cache of its own encoder, and keeps that encoder
    scst = ["scst", "--data", str(root), "--init-from", str(ft / "best"), "--out", str(tmp_path / "scst"),
            "--epochs", "1", "--images-per-batch", "240", "--samples", "2", "--val-images", "10", "--threads", "2",
            "--device", "cpu"]
    assert cli.main(scst + ["--cache", str(cache)]) == 2
    assert cli.main(scst + ["--cache", str(fast)]) == 0
    after = CaptionModel.load(tmp_path / "scst" / "best")
    assert after.encoder.fingerprint() == tuned.encoder.fingerprint()
    cap = Captioner.load(tmp_path / "scst" / "best")
    assert cap.caption(root / "images" / a.ids[0]).caption
