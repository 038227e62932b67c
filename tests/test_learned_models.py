"""Learned models as versions: `captioner models` lists them, the studio's Models tab learns one in the
background and its picker switches the studio's captioner to it (and back) by names the server lists,
and Ray workers caption with a learned model folder. All on the conftest's tiny model and the synthetic
gallery of test_learn (clusters of encoder grids, each with its own edited caption)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from captioner.cli.main import main
from captioner.learning import LearnConfig, learn
from captioner.learning.picker import STARTED
from captioner.pipeline import Captioner
from captioner.storage import Gallery
from captioner.studio.app import Studio
from captioner.studio.values import user_errors
from test_learn import CLUSTER_CAPTIONS, FAST, captions_for, edits, grid, make_gallery


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def started(tiny_model_dir):
    return Captioner.load(tiny_model_dir)


@pytest.fixture()
def studio(started, tiny_model_dir, tmp_path):
    gallery = make_gallery(tmp_path / "gallery", "tiny-test")
    s = Studio(started, Gallery(gallery), model_dir=tiny_model_dir)
    s.upload_dir = None
    s.learning.job.cfg = LearnConfig(**FAST)  # the tiny random model: all of its decoder learns
    return s


def test_models_lists_a_learned_model_with_its_figures(tiny_model_dir, tmp_path, capsys):
    gallery = tmp_path / "gallery"
    assert main(["models", "--gallery", str(gallery)]) == 0
    assert "no learned models in" in capsys.readouterr().out
    out = gallery / "models" / "mine"
    learn(edits(8), out, LearnConfig(**{**FAST, "min_held_out_edits": 20}), base_dir=tiny_model_dir, progress=False)
    assert main(["models", "--gallery", str(gallery)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("default (used without --model): ")
    mine = [line for line in lines if line.startswith(str(out))]
    assert len(mine) == 1 and "tiny-test+mine" in mine[0] and "from 24 edits" in mine[0]
    assert "held-out CIDEr-D" in mine[0] and " on 5 edits" in mine[0]  # 24 edits: 20% held out
    assert main(["models", "--gallery", str(gallery), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    (m,) = listing["learned"]
    # the check passed, so the written model learned again from all 24 (the check model from the other 19)
    assert m["id"] == "mine" and m["edits"] == 24 and m["trained_on"] == 24 and m["held_out"]["held_out_edits"] == 5
    assert "learned from the other 19 edits" in m["held_out"]["measured_on"]
    assert m["held_out"]["cider_after"] >= m["held_out"]["cider_before"]
    # `learn --list` prints the same list
    assert main(["learn", "--gallery", str(gallery), "--list"]) == 0
    assert any(line.startswith(str(out)) for line in capsys.readouterr().out.splitlines())


def test_studio_learns_in_the_background_and_the_picker_switches_captions(studio, started, tiny_model_dir, tmp_path):
    tab = studio.learning
    before_base = folder_digest(tiny_model_dir)
    assert "**12** edited captions" in tab.edits_line()
    choices = tab.picker.choices()
    assert [v for _, v in choices] == [STARTED]

    text, timer = tab.start_learning()
    assert timer.active is True and text.startswith("⏳")
    status = tab.job.wait(600)
    assert status.state == "done", status.message
    text, timer, model, _ = tab.poll()
    assert timer.active is False
    assert "Learned from 12 of 12 edits" in text and "zorblat" in text and status.model_id in text
    # the new model is offered, but nothing switched, and the started model's folder is unchanged
    assert studio.captioner is started and studio.model_name == "tiny-test"
    assert folder_digest(tiny_model_dir) == before_base
    values = [v for _, v in model.constructor_args["choices"]]
    assert values == [STARTED, status.model_id]
    learned_dir = studio.gallery.folder / "models" / status.model_id
    assert (learned_dir / "config.json").is_file() and (learned_dir / "learned.json").is_file()
    assert captions_for(learned_dir, [grid(c, 70) for c in CLUSTER_CAPTIONS]) == list(CLUSTER_CAPTIONS.values())

    photo = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), (30, 120, 200)).save(photo)
    original = started.caption(str(photo)).caption
    message, _, header = tab.use_model(status.model_id)
    assert studio.captioner is not started and studio.model_name == f"tiny-test+{status.model_id}"
    assert studio.model_name in message and f"Model <b>{studio.model_name}</b>" in header
    assert studio.captioner.caption(str(photo)).caption == Captioner.load(learned_dir).caption(str(photo)).caption
    assert studio.photos is not None and studio.captioner.name != started.name
    # and back to the started model
    tab.use_model(STARTED)
    assert studio.captioner is started and studio.captioner.caption(str(photo)).caption == original


def test_switching_models_redraws_the_header(started, tiny_model_dir, tmp_path):
    """The page's header names the model in use: the Models tab's switch sends it a new one (it kept the
    started model's name before)."""
    gallery = make_gallery(tmp_path / "gallery", "tiny-test")
    learn(edits(), gallery / "models" / "mine", LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False)
    studio = Studio(started, Gallery(gallery), model_dir=tiny_model_dir)
    demo = studio.build()
    assert "Model <b>tiny-test</b>" in studio.header.value
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "use-model")
    (switch,) = [d for d in demo.config["dependencies"]
                 if any(t[0] == button._id and t[1] == "click" for t in d["targets"])]
    assert studio.header._id in switch["outputs"]
    message, _, header = studio.learning.use_model("mine")
    assert "Model <b>tiny-test+mine</b>" in header and "tiny-test+mine" in message
    _, _, header = studio.learning.use_model(STARTED)
    assert "Model <b>tiny-test</b>" in header and "tiny-test+mine" not in header


def test_the_picker_refuses_a_name_the_server_did_not_list(studio, started, tiny_model_dir, tmp_path):
    tab = studio.learning
    outside = tmp_path / "elsewhere"
    learn(edits(), outside, LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False)  # a real model folder
    for name in (str(outside), "../elsewhere", "../../elsewhere", str(tiny_model_dir), "", None, "models"):
        with pytest.raises(gr.Error, match="no learned model called"):
            user_errors(tab.use_model)(name)  # as the studio wires it: a message, no traceback
        assert studio.captioner is started and studio.model_name == "tiny-test"


def test_learning_with_too_few_edits_says_so_and_writes_nothing(started, tiny_model_dir, tmp_path):
    gallery = Gallery(tmp_path / "gallery")
    s = Studio(started, gallery, model_dir=tiny_model_dir)
    s.learning.job.cfg = LearnConfig(**FAST)
    assert "**0** edited captions" in s.learning.edits_line()
    s.learning.start_learning()
    status = s.learning.job.wait(120)
    assert status.state == "failed" and "too few edits to learn from" in status.message
    assert "Nothing was learned" in s.learning.status_text() and s.captioner is started
    assert not any((gallery.folder / "models").glob("*")) if (gallery.folder / "models").exists() else True


@pytest.mark.extras("scale")
@pytest.mark.slow
def test_ray_workers_caption_with_a_learned_model(tiny_model_dir, tmp_path):
    """`caption --ray --model LEARNED`: the workers load the learned folder (its grown vocabulary and new
    weights travel with the job) and caption exactly as `Captioner.load(LEARNED)` does."""
    import ray

    from captioner.scale.results_store import read_results

    learned = tmp_path / "learned"
    learn(edits(), learned, LearnConfig(**FAST), base_dir=tiny_model_dir, progress=False)
    photos = []
    for i in range(4):
        p = tmp_path / f"p{i}.png"
        Image.new("RGB", (90, 70), (60 * i, 200 - 40 * i, 90)).save(p)
        photos.append(str(p))
    want = {p: Captioner.load(learned).caption(p).caption for p in photos}
    base = {p: Captioner.load(tiny_model_dir).caption(p).caption for p in photos}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["caption", *photos, "--model", str(learned), "--ray", "--out", str(tmp_path / "out"),
                     "--ray-workers", "1", "--ray-worker-cpus", "1", "--ray-shard-size", "2"]) == 0
    finally:
        ray.shutdown()
    rows = {r["image"]: r for r in read_results(str(tmp_path / "out"))}
    assert {p: rows[p]["candidates"][0]["caption"] for p in photos} == want
    assert want != base  # the learned model's captions, not the base model's


@pytest.mark.slow
def test_a_learned_model_gets_its_own_onnx_runtime_where_its_base_has_one(tiny_model_dir, tmp_path):
    """The base's runtime names the base's decoder weights (checksums.json): the learned folder gets a
    runtime of its own, used by `Captioner` (no stale-checksum warning) and by the torch-free
    `LeanCaptioner`, which caption alike, new word included."""
    import warnings

    from captioner.model.folder import CaptionModel
    from captioner.runtime.checksums import read_checksums
    from captioner.runtime.lean import LeanCaptioner

    base = tmp_path / "base"
    CaptionModel.load(tiny_model_dir).save(base, runtime=True)
    out = tmp_path / "learned"
    learn(edits(), out, LearnConfig(**FAST), base_dir=base, progress=False)
    listed = read_checksums(out)
    assert listed["runtime"]["decoder_step.onnx"]["vocab_size"] == len(json.loads((out / "vocab.json").read_text())["itos"])
    assert listed["files"]["decoder.safetensors"]["sha256"] == hashlib.sha256((out / "decoder.safetensors").read_bytes()).hexdigest()
    photos = []
    for i in range(3):
        photos.append(tmp_path / f"p{i}.png")
        Image.new("RGB", (90, 70), (30 + 60 * i, 140, 60 + 40 * i)).save(photos[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cap = Captioner.load(out)
        assert cap.fast_decoder.path == out / "decoder_step.onnx"
        torch_captions = [cap.caption(str(p)).caption for p in photos]
    assert [LeanCaptioner(out).caption(str(p)).caption for p in photos] == torch_captions
