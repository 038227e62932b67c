"""The ONNX export cache: a file per graph, keyed on everything that changes the graph (grid, input
size, backbone class and configuration, weights, opset, torch version), rebuilt when it is
corrupt, written atomically and safely when several exporters race."""
from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import pytest
import torch
from PIL import Image

from captioner.decoding.config import DecodingConfig
from captioner.model.config import ModelConfig
from captioner.model.encoder import Encoder
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab
from captioner.pipeline import Captioner
from captioner.runtime import onnx_runtime
from captioner.runtime.fused_decoder import InferenceDecoder

WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "cat", "runs", "on", "the", "grass"]


def tiny_model(grid: int = 2, input_size: int = 64, seed: int = 0) -> CaptionModel:
    torch.manual_seed(seed)
    vocab = Vocab(WORDS)
    cfg = ModelConfig(backbone="efficientnet-lite2", input_size=input_size, grid=grid, embed_dim=16, attention_dim=16,
                      hidden_dim=16, dropout=0.0, vocab_size=len(vocab), name="tiny-cache-test")
    return CaptionModel(cfg, vocab, decoding=DecodingConfig(max_len=6)).eval()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty export cache, and no export failures remembered from other tests."""
    monkeypatch.setenv("CAPTIONER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPTIONER_ONNX", raising=False)
    monkeypatch.setattr(onnx_runtime, "_failed", {})
    return tmp_path / "cache" / "onnx"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder("efficientnet-lite2", 2, pretrained=True).eval()


# ---------------------------------------------------------------------------- the key
@pytest.mark.slow  # two or more encoder exports
def test_models_differing_only_in_grid_get_their_own_encoder_files(cache):
    small, large = tiny_model(grid=2), tiny_model(grid=4)
    for (ka, va), (kb, vb) in zip(small.encoder.state_dict().items(), large.encoder.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)  # the same weights: only the pooling grid differs
    a, b = Captioner(small), Captioner(large)
    assert a.onnx_encoder is not None and b.onnx_encoder is not None, onnx_runtime.last_error
    assert a.onnx_encoder.path != b.onnx_encoder.path
    assert len(list(cache.glob("encoder-*.onnx"))) == 2
    x = torch.randn(2, 3, 64, 64)
    for cap, grid in ((a, 2), (b, 4)):
        got = cap.onnx_encoder(x)
        with torch.inference_mode():
            ref = cap.model.encoder(x)
        assert got.shape == ref.shape == (2, grid, grid, 1280)
        assert torch.allclose(got, ref, atol=1e-3, rtol=1e-3)
        result = cap.caption(_photo_bytes(), beam_size=2)
        assert result.error is None and result.candidates, result.error


def _photo_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (90, 70), (30, 140, 60)).save(buf, format="PNG")
    return buf.getvalue()


def test_encoder_key_follows_everything_that_changes_the_graph(encoder, monkeypatch):
    key = onnx_runtime.encoder_key
    base = key(encoder, 64)
    assert key(encoder, 64) == base  # stable
    assert key(encoder, 96) != base  # input size

    other_grid = Encoder("efficientnet-lite2", 3, pretrained=True).eval()
    other_grid.load_state_dict(encoder.state_dict())
    assert key(other_grid, 64) != base  # grid: no weights, only the pooling

    class SubEncoder(Encoder):
        pass

    sub = SubEncoder("efficientnet-lite2", 2, pretrained=True).eval()
    assert key(sub, 64) != base  # the encoder's class

    max_pool = Encoder("efficientnet-lite2", 2, pretrained=True).eval()
    max_pool.pool = torch.nn.AdaptiveMaxPool2d((2, 2))
    assert key(max_pool, 64) != base  # a submodule without weights (configuration)

    lite0 = Encoder("efficientnet-lite0", 2, pretrained=True).eval()
    assert key(lite0, 64) != base  # the backbone

    nudged = Encoder("efficientnet-lite2", 2, pretrained=True).eval()
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-3
    assert key(nudged, 64) != base  # the weights

    stats = Encoder("efficientnet-lite2", 2, pretrained=True).eval()
    with torch.no_grad():
        next(m for m in stats.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean.add_(0.5)
    assert key(stats, 64) != base  # the buffers (batch-norm statistics)

    monkeypatch.setattr(onnx_runtime, "OPSET", onnx_runtime.OPSET + 1)
    assert key(encoder, 64) != base  # the opset
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.1-test")
    assert key(encoder, 64) != base  # the torch version (its exporter)


def test_encoder_key_does_not_depend_on_the_training_mode(encoder):
    base = onnx_runtime.encoder_key(encoder, 64)
    encoder.train()
    try:
        assert onnx_runtime.encoder_key(encoder, 64) == base  # export runs in eval mode either way
    finally:
        encoder.eval()


def test_encoder_key_is_the_same_in_another_process(encoder):
    """The key names a file shared by all processes: nothing process-specific (addresses) in it."""
    code = ("from captioner.model.encoder import Encoder; from captioner.runtime import onnx_runtime; "
            "print(onnx_runtime.encoder_key(Encoder('efficientnet-lite2', 2, pretrained=True).eval(), 64))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == onnx_runtime.encoder_key(encoder, 64)


def test_step_key_follows_weights_shapes_and_versions(monkeypatch):
    a, b = tiny_model(seed=0), tiny_model(seed=1)
    fa, fb = InferenceDecoder(a.decoder), InferenceDecoder(b.decoder)
    base = onnx_runtime.step_key(fa)
    assert onnx_runtime.step_key(InferenceDecoder(a.decoder)) == base
    assert onnx_runtime.step_key(fb) != base
    monkeypatch.setattr(onnx_runtime, "OPSET", onnx_runtime.OPSET + 1)
    assert onnx_runtime.step_key(fa) != base
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.1-test")
    assert onnx_runtime.step_key(fa) != base


# ---------------------------------------------------------------------------- corrupt files
CORRUPTIONS = {
    "garbage": lambda data: b"this is not an ONNX file \x00\xff" * 40,
    "truncated": lambda data: data[: len(data) // 3],
    "empty": lambda data: b"",
}


@pytest.mark.slow  # two or more encoder exports
def test_a_corrupt_encoder_file_is_rebuilt(cache):
    model = tiny_model()
    first = Captioner(model).onnx_encoder
    assert first is not None, onnx_runtime.last_error
    path, good = first.path, first.path.read_bytes()
    x = torch.randn(1, 3, 64, 64)
    for damage, corrupt in CORRUPTIONS.items():
        bad = corrupt(good)
        path.write_bytes(bad)
        with pytest.warns(RuntimeWarning, match="cannot be opened .* exporting it again"):
            again = Captioner(model)
        assert again.onnx_encoder is not None, f"{damage}: {onnx_runtime.last_error}"
        assert again.onnx_encoder.path == path
        assert path.read_bytes() != bad and len(path.read_bytes()) > len(good) // 2, damage  # exported anew
        with torch.inference_mode():
            assert torch.allclose(again.onnx_encoder(x), model.encoder(x), atol=1e-3, rtol=1e-3), damage
        assert not onnx_runtime._failed
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary files left


def test_a_corrupt_decoder_step_file_is_rebuilt(cache):
    model = tiny_model()
    step = Captioner(model).fast_decoder
    assert isinstance(step, onnx_runtime.OnnxStepDecoder), onnx_runtime.last_error
    step.path.write_bytes(b"\x08garbage")
    with pytest.warns(RuntimeWarning, match="cannot be opened"):
        again = Captioner(model).fast_decoder
    assert isinstance(again, onnx_runtime.OnnxStepDecoder), onnx_runtime.last_error
    assert again.path == step.path and again.path.read_bytes() != b"\x08garbage"


def test_a_file_that_cannot_be_rebuilt_falls_back_once(cache, monkeypatch):
    """If even a fresh export cannot be opened, the twin is None (PyTorch runs) and the reason is kept."""
    opened = []

    def broken_open(path):
        opened.append(path)
        raise RuntimeError("cannot open")

    cache.mkdir(parents=True)
    (cache / "fake-k1.onnx").write_bytes(b"corrupt")
    made = []
    with pytest.warns(RuntimeWarning, match="cannot be opened"):
        twin = onnx_runtime._twin("fake", lambda: "k1", lambda p: (made.append(p), p.write_bytes(b"x")), broken_open)
    assert twin is None and "cannot open" in onnx_runtime.last_error
    assert len(opened) == 2 and len(made) == 1  # opened, rebuilt once, opened again: no loop
    assert (cache / "fake-k1.onnx").read_bytes() == b"x"
    assert onnx_runtime._twin("fake", lambda: "k1", lambda p: made.append(p), broken_open) is None
    assert len(made) == 1  # not retried in this process


# ---------------------------------------------------------------------------- races
def test_exporters_racing_for_one_file_each_write_their_own_temporary_file(cache):
    """Many exporters at once (threads here; processes behave the same): each writes its own
    temporary file and moves it into place, so every reader opens a complete file."""
    payload = b"complete-graph" * 5000
    barrier = threading.Barrier(6)
    temps, results, errors = set(), [], []

    def make(path):
        temps.add(path)
        with open(path, "wb") as fh:
            for i in range(0, len(payload), 7000):
                fh.write(payload[i : i + 7000])
                fh.flush()
                time.sleep(0.002)

    def open_(path):
        data = path.read_bytes()
        if data != payload:
            raise ValueError(f"a partial file was opened ({len(data)} bytes)")
        return data

    def worker():
        try:
            barrier.wait()
            results.append(onnx_runtime._twin("race", lambda: "k2", make, open_))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [payload] * 6, onnx_runtime.last_error
    assert len(temps) >= 1 and all(t.parent == cache for t in temps)
    assert sorted(p.name for p in cache.iterdir()) == ["race-k2.onnx"]


# ---------------------------------------------------------------------------- the model folder's own runtime
def _ids(cap: Captioner) -> list:
    photos = [Image.new("RGB", (90, 70), (30 + 60 * i, 140, 60 + 40 * i)) for i in range(3)]
    return [[c.ids for c in r.candidates] for r in cap.caption_many(photos, beam_size=3)]


@pytest.fixture(scope="module")
def runtime_folder(tmp_path_factory):
    """A tiny model saved in half precision with its ONNX runtime."""
    folder = tmp_path_factory.mktemp("with-runtime")
    tiny_model(seed=3).save(folder, half=True, runtime=True)
    return folder


def test_a_folder_with_its_runtime_is_used_directly_and_gives_the_same_captions(runtime_folder, cache):
    from captioner.runtime import checksums, folder_runtime

    listed = checksums.read_checksums(runtime_folder)
    assert set(listed["files"]) == {"encoder.onnx", "decoder_step.onnx", "decoder.safetensors"}
    step = runtime_folder / folder_runtime.STEP_FILE
    assert step.stat().st_size < 64_000  # reads its weights from decoder.safetensors (external data)
    own = Captioner.load(runtime_folder)
    assert own.onnx_encoder.path == runtime_folder / "encoder.onnx"
    assert own.fast_decoder.path == step
    assert not cache.exists() or not list(cache.glob("*.onnx"))  # nothing exported, no key computed
    plain = Captioner(CaptionModel.load(runtime_folder), onnx=False)
    assert _ids(own) == _ids(plain)


def test_a_runtime_whose_weights_changed_is_not_used(runtime_folder, cache, tmp_path):
    """decoder.safetensors replaced by other weights (e.g. a copy over the folder): the folder's step would
    read them with a stale graph; checksums.json tells, and the per-machine export is used."""
    import shutil

    from captioner.runtime import folder_runtime

    folder = tmp_path / "changed"
    shutil.copytree(runtime_folder, folder)
    tiny_model(seed=4).save(tmp_path / "other", half=True)
    shutil.copy(tmp_path / "other" / "decoder.safetensors", folder / "decoder.safetensors")
    monkey_warned = folder_runtime._warned
    monkey_warned.discard((str(folder), folder_runtime.STEP_FILE))
    with pytest.warns(RuntimeWarning, match="decoder.safetensors differ from checksums.json"):
        cap = Captioner.load(folder)
        step = cap.fast_decoder
    assert cap.onnx_encoder.path == folder / "encoder.onnx"  # the encoder does not depend on it
    assert step.path.parent == cache
    assert _ids(cap) == _ids(Captioner(CaptionModel.load(folder), onnx=False))


def test_weights_changed_in_memory_leave_the_folder_runtime(runtime_folder, cache):
    cap = Captioner.load(runtime_folder)
    with torch.no_grad():
        cap.model.decoder.out.bias.add_(0.5)  # e.g. fine-tuning in this process
    assert cap.fast_decoder.path.parent == cache
    assert _ids(cap) == _ids(Captioner(cap.model, onnx=False))


def test_saving_without_the_runtime_removes_a_stale_one(runtime_folder, tmp_path):
    import shutil

    folder = tmp_path / "resaved"
    shutil.copytree(runtime_folder, folder)
    tiny_model(seed=5).save(folder)
    assert not [p.name for p in folder.iterdir() if p.name in ("encoder.onnx", "decoder_step.onnx", "checksums.json")]


def test_the_shipped_folder_carries_its_runtime_and_stays_small():
    from captioner.model.folder import shipped_model_dir
    from captioner.runtime import checksums, folder_runtime

    folder = shipped_model_dir()
    listed = checksums.read_checksums(folder)
    assert listed is not None, "run python scripts/ship_model.py --runtime-only"
    assert checksums.mismatches(folder, list(listed["files"]), listed["files"]) == []
    assert set(folder_runtime.RUNTIME_FILES) <= set(listed["files"])
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total < 50_000_000, f"the shipped folder holds {total / 1e6:.1f} MB"


def test_a_folder_with_new_weights_and_the_old_encoder_keeps_the_encoder_silently(runtime_folder, cache, tmp_path):
    """What `captioner learn` writes: new decoder weights, the base model's encoder.onnx and checksums.json
    carried over, no decoder_step.onnx: the encoder file is used, the step is exported, nothing warns."""
    import shutil
    import warnings

    folder = tmp_path / "learned"
    shutil.copytree(runtime_folder, folder)
    tiny_model(seed=6).save(tmp_path / "other", half=True)
    shutil.copy(tmp_path / "other" / "decoder.safetensors", folder / "decoder.safetensors")
    (folder / "decoder_step.onnx").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cap = Captioner.load(folder)
        assert cap.onnx_encoder.path == folder / "encoder.onnx"
        assert cap.fast_decoder.path.parent == cache
