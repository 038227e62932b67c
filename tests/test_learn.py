"""`captioner learn`: learning from edited captions on a tiny synthetic gallery (the conftest's tiny
model: a random 16-unit decoder over 2x2 grids), so every run takes seconds.

Photos come in clusters of similar encoder grids; the user's edits give each cluster its own caption,
so a model that learned says a cluster's caption for a new photo of that cluster."""
from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner.cli.main import main
from captioner.errors import DataError
from captioner.learning import Edit, LearnConfig, LearnRefused, learn
from captioner.learning.heldout import FeatureCaptioner, cider
from captioner.learning.model_folder import list_models
from captioner.model.folder import load_model
from captioner.pipeline import Captioner, folder_extras

CLUSTER_CAPTIONS = {0: "a dog runs on the grass", 1: "a man sits on the red ball", 2: "a zorblat sits on the grass"}
# the tiny model is random: all of its decoder must learn (a real model learns its words only, the default)
FAST = dict(epochs=60, batch_size=8, lr=0.01, distill=0.0, l2=0.0, checkpoint_every=1000, threads=1, train="decoder")


def grid(cluster: int, n: int, channels: int = 1280) -> np.ndarray:
    """A photo's (4, C) grid: its cluster's pattern plus a little noise."""
    centre = np.random.default_rng(100 + cluster).gamma(1.0, 0.1, (4, channels))
    noise = np.random.default_rng(1000 * cluster + n).normal(0, 0.005, (4, channels))
    return np.maximum(centre + noise, 0).astype(np.float16)


def edits(per_cluster: int = 4, captions=CLUSTER_CAPTIONS, start: int = 0) -> list[Edit]:
    return [Edit(f"photo {c}-{n}", f"/nonexistent/{c}-{n}.jpg", captions[c], features=grid(c, n))
            for c in captions for n in range(start, start + per_cluster)]


def captions_for(folder: Path, grids: list[np.ndarray]) -> list[str]:
    return FeatureCaptioner(load_model(folder, with_encoder=False), folder_extras(folder)).captions(grids)


def make_gallery(folder: Path, model_name: str, per_cluster: int = 4) -> Path:
    from captioner.storage.gallery import Gallery

    with Gallery(folder) as gallery:
        for e in edits(per_cluster):
            c, n = (int(x) for x in e.key.split()[1].split("-"))
            image = Image.new("RGB", (64, 64), (40 * c + n, 90, 200 - 30 * c))
            item = gallery.save(image, f"{c}-{n}.jpg", "a blue cat", model_name=model_name, features=e.features)
            gallery.update_caption(item, e.caption)
    return folder


def test_learning_moves_captions_toward_the_edits_and_learns_a_new_word(tiny_model_dir, tmp_path):
    out = tmp_path / "learned"
    fresh = edits(2, start=50)  # new photos of the same clusters, never learned from
    grids = [e.features for e in fresh]
    refs = [[e.caption] for e in fresh]
    before = captions_for(tiny_model_dir, grids)
    report = learn(edits(), out, LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False)
    after = captions_for(out, grids)
    assert report.new_words == ["zorblat"] and report.held_out is None  # 12 edits: too few to hold out
    assert cider(after, refs) > cider(before, refs) + 50
    assert sum(a == e.caption for a, e in zip(after, fresh)) >= 4
    assert any("zorblat" in a.split() for a in after)  # the new word is sayable
    assert "zorblat" in json.loads((out / "vocab.json").read_text())["itos"]
    info = json.loads((out / "learned.json").read_text())
    assert info["edits"] == 12 and info["base_name"] == "tiny-test" and "zorblat" in info["new_words"]
    assert (out / "README.md").read_text().startswith("# tiny-test+learned")
    assert not (out / ".learning").exists()


def test_learned_folder_loads_with_captioner_load_and_the_cli(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "learned"
    learn(edits(), out, LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), (120, 30, 30)).save(photo)
    result = Captioner.load(out).caption(str(photo))
    assert result.error is None and result.caption
    assert main(["caption", "--model", str(out), str(photo)]) == 0
    assert result.caption in capsys.readouterr().out


def test_refuses_a_model_worse_on_the_held_out_edits(tiny_model_dir, tmp_path):
    good = tmp_path / "good"
    learn(edits(), good, LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False)
    # new edits that contradict what the model learned: clusters 0 and 1 swapped. The held-out ones
    # are what it already says, so learning the others can only make it worse on them
    swapped = {0: CLUSTER_CAPTIONS[1], 1: CLUSTER_CAPTIONS[0], 2: CLUSTER_CAPTIONS[2]}
    new = edits(8, swapped, start=20)
    cfg = LearnConfig(**{**FAST, "min_held_out_edits": 10, "held_out": 0.3})
    from captioner.learning.heldout import split_held_out

    _, held = split_held_out([e.key for e in new], cfg.held_out, cfg.min_held_out_edits, cfg.seed)
    said = captions_for(good, [new[i].features for i in held])
    for i, s in zip(held, said):
        new[i].caption = s
    out = tmp_path / "worse"
    with pytest.raises(LearnRefused, match="worse than .* held-out edits"):
        learn(new, out, cfg, base_dir=good, progress=False)
    assert not (out / "config.json").exists()


def test_too_few_and_unusable_edits_are_one_line(tiny_model_dir, tmp_path):
    few = edits(1)
    few.append(Edit("photo x", "/nonexistent/x.jpg", "zzqx vvrq", features=grid(0, 9)))  # no known word
    lines = []
    with pytest.raises(DataError, match="too few edits to learn from: 3 usable"):
        learn(few, tmp_path / "m", LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False, log=lines.append)
    assert lines == ["left out: photo x: the caption 'zzqx vvrq' has only words the model does not know"]


@pytest.mark.slow
def test_cli_learns_from_a_gallery_lists_it_and_resumes_after_a_kill(tiny_model_dir, tmp_path):
    gallery = make_gallery(tmp_path / "gallery", "tiny-test")
    out = gallery / "models" / "mine"
    cmd = [sys.executable, "-m", "captioner", "learn", "--gallery", str(gallery), "--out", str(out),
           "--model", str(tiny_model_dir), "--train", "decoder", "--distill", "0", "--l2", "0", "--epochs", "100", "--batch-size", "8", "--lr", "0.01",
           "--checkpoint-every", "10", "--threads", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = out / ".learning" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (out / "config.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    step = int(done.stderr.split("resumed from step ")[1].split()[0])
    assert 10 <= step < 200 and step % 10 == 0
    assert "model written to" in done.stdout and (out / "config.json").is_file()
    assert not (out / ".learning").exists()
    listed = list_models(gallery)
    assert [m["path"] for m in listed] == [str(out)] and listed[0]["edits"] == 12
    shown = subprocess.run([sys.executable, "-m", "captioner", "learn", "--gallery", str(gallery), "--list"],
                           capture_output=True, text=True)
    assert shown.stdout.splitlines()[2].startswith(str(out))  # after the default model and a heading
    # the learned model says the gallery's edits
    grids = [grid(c, 60) for c in CLUSTER_CAPTIONS]
    assert captions_for(out, grids) == list(CLUSTER_CAPTIONS.values())


def test_cli_bad_captions_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "edits.jsonl"
    bad.write_text('{"image": "a.jpg", "caption": "a dog"}\nnot json\n')
    assert main(["learn", "--captions", str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --captions {bad}, line 2: not JSON (expected {{\"image\": path, \"caption\": text}})"


def test_ctrl_c_keeps_the_progress_and_the_same_call_resumes(tiny_model_dir, tmp_path, monkeypatch):
    from captioner.learning.finetune import Learner

    real_step = Learner.train_step

    def interrupted(self):
        if self.step == 7:
            raise KeyboardInterrupt
        return real_step(self)

    out, lines = tmp_path / "learned", []
    monkeypatch.setattr(Learner, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        learn(edits(), out, LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False, log=lines.append)
    assert lines[-1].startswith("interrupted at step 7 of 120") and (out / ".learning" / "checkpoint.pt").is_file()
    monkeypatch.setattr(Learner, "train_step", real_step)
    learn(edits(), out, LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False, log=lines.append)
    assert "resumed from step 7 of 120" in lines[-1] and (out / "config.json").is_file()


def held_out_keys(es: list[Edit], cfg: LearnConfig) -> set[str]:
    from captioner.learning.heldout import split_held_out

    _, held = split_held_out([e.key for e in es], cfg.held_out, cfg.min_held_out_edits, cfg.seed)
    return {es[i].key for i in held}


def test_after_the_check_passes_the_written_model_learns_from_every_edit(tiny_model_dir, tmp_path):
    """The held-out check decides whether learning helps; the written model then learns from all edits
    (a new word only the held-out edits use becomes sayable), unless --no-retrain-all."""
    cfg = LearnConfig(**{**FAST, "min_held_out_edits": 20})
    es = edits(8)  # 24 edits: 5 held out
    held = held_out_keys(es, cfg)
    quiet = [e for e in es if e.key in held and "grass" in e.caption][0]
    quiet.caption = quiet.caption.replace("grass", "meadow")  # a word only a held-out edit uses
    report = learn(es, tmp_path / "all", cfg, base_dir=tiny_model_dir, progress=False)
    assert report.trained_on == 24 and report.held_out.n == 5 and "meadow" in report.new_words
    info = json.loads((tmp_path / "all" / "learned.json").read_text())
    assert info["trained_on"] == 24 and "learned from the other 19 edits" in info["held_out"]["measured_on"]
    assert "meadow" in json.loads((tmp_path / "all" / "vocab.json").read_text())["itos"]

    checked = learn(es, tmp_path / "checked", LearnConfig(**{**FAST, "min_held_out_edits": 20, "retrain_all": False}),
                    base_dir=tiny_model_dir, progress=False)
    assert checked.trained_on == 19 and "meadow" not in checked.new_words
    assert checked.held_out.to_dict() == report.held_out.to_dict()  # the same check model
    assert "meadow" not in json.loads((tmp_path / "checked" / "vocab.json").read_text())["itos"]


def test_a_kill_while_learning_from_all_edits_resumes_without_redoing_the_check(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    from captioner.learning.finetune import Learner

    real_step = Learner.train_step
    phases, interrupts = [], []

    def interrupted(self):
        if self.step == 0:
            phases.append(self.work.name)
        if self.work.name == "all" and self.step == 5 and not interrupts:
            interrupts.append(self.step)
            raise KeyboardInterrupt
        return real_step(self)

    cfg = LearnConfig(**{**FAST, "min_held_out_edits": 20})
    out, lines = tmp_path / "learned", []
    monkeypatch.setattr(Learner, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        learn(edits(8), out, cfg, base_dir=tiny_model_dir, progress=False, log=lines.append)
    assert phases == [".learning", "all"] and (out / ".learning" / "check.json").is_file()
    assert (out / ".learning" / "all" / "checkpoint.pt").is_file() and not (out / "config.json").exists()
    report = learn(edits(8), out, cfg, base_dir=tiny_model_dir, progress=False, log=lines.append)
    assert phases == [".learning", "all"]  # the check model was not learned again
    assert any(line.startswith("the held-out check passed already") for line in lines)
    assert any(line.startswith("resumed from step 5 of 180") for line in lines)
    assert report.trained_on == 24 and report.held_out.n == 5 and (out / "config.json").is_file()
    assert not (out / ".learning").exists()


def calibrated_base(tiny_model_dir: Path, folder: Path, intercept: float) -> Path:
    """A copy of the tiny model with a confidence calibration that says `intercept` whatever the caption."""
    import shutil

    from captioner.confidence.calibration import FEATURES, ConfidenceScorer

    shutil.copytree(tiny_model_dir, folder)
    k = len(FEATURES)
    ConfidenceScorer([0.0] * k, [1.0] * k, [0.05] + [0.0] * (k - 1), intercept, features=FEATURES,
                     about={"threshold": 0.3319, "fitted_on": "test"}).save(folder)
    return folder


def test_the_confidence_calibration_is_refitted_on_enough_held_out_edits(tiny_model_dir, tmp_path):
    """A base calibration far too unsure for the learned model (about 1% where most held-out captions are
    acceptable) is refitted on the held-out edits; with too few of them the base one is kept, and
    learned.json and the model card say why."""
    from captioner.confidence.calibration import ConfidenceScorer

    base = calibrated_base(tiny_model_dir, tmp_path / "base", intercept=-4.5)
    cfg = LearnConfig(**{**FAST, "min_held_out_edits": 20, "held_out": 0.5, "calibration_min_edits": 10})
    es = edits(10)  # 30 edits, 15 held out
    held = sorted(held_out_keys(es, cfg))
    for key in held[:4]:  # a few held-out captions the model will not say: unacceptable ones
        next(e for e in es if e.key == key).caption = "blue cat"  # no n-gram of any cluster caption
    report = learn(es, tmp_path / "refit", cfg, base_dir=base, progress=False)
    conf = report.confidence
    assert conf["refitted"] is True and conf["held_out_edits"] == 15, json.dumps(conf)
    assert 0.5 <= conf["acceptable_share"] < 1.0
    assert conf["base_mean_confidence"] < 0.05 and conf["refit_mean_confidence"] > 0.3
    assert conf["refit_brier_leave_one_out"] < conf["base_brier"]
    scorer = ConfidenceScorer.load(tmp_path / "refit")
    assert scorer.about["made_by"].startswith("captioner learn") and scorer.about["threshold"] == 0.3319
    assert json.loads((tmp_path / "refit" / "learned.json").read_text())["confidence"]["refitted"] is True
    assert "confidence calibration: the base model's, refitted on 15" in (tmp_path / "refit" / "README.md").read_text()
    photo = tmp_path / "photo.png"  # noise: no input warning caps the confidence
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photo)
    refit, before = (Captioner.load(m).caption(str(photo)) for m in (tmp_path / "refit", base))
    assert before.confidence < 0.05 < refit.confidence

    kept = learn(es, tmp_path / "kept", dataclasses.replace(cfg, calibration_min_edits=40), base_dir=base,
                 progress=False)
    assert kept.confidence["refitted"] is False and "only 15 held-out edits" in kept.confidence["why"]
    assert (tmp_path / "kept" / "confidence.json").read_bytes() == (base / "confidence.json").read_bytes()
    card = (tmp_path / "kept" / "README.md").read_text()
    assert "confidence calibration: the base model's, kept (only 15 held-out edits" in card


@pytest.mark.slow
def test_held_out_captions_are_the_captioners_own(tmp_path):
    """`FeatureCaptioner` (the held-out check, bench_learn) decodes stored grids as `Captioner` decodes a
    photo: grounding and the support penalty of the shipped decoding included."""
    import torch

    from captioner.model.folder import default_model_dir
    from oracles.photos import real_photos

    photos = real_photos(12)
    if not photos:
        pytest.skip("the Flickr8k photos are not present")
    cap = Captioner(load_model(default_model_dir()), onnx=False)
    assert cap.decoding.support_penalty > 0 and cap.support_head is not None
    with torch.inference_mode():
        feats = cap.encode(torch.stack([cap.prepare(str(p)).pixels for p in photos]))
    grids = list(feats.reshape(len(photos), -1, feats.shape[-1]).numpy())
    want = [c[0].caption for c in cap.decode(feats)]
    assert FeatureCaptioner(cap.model, folder_extras(default_model_dir())).captions(grids) == want
