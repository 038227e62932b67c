"""A model folder carries its own ONNX runtime: `encoder.onnx` (the CNN encoder, with its weights) and
`decoder_step.onnx` (one beam-search step; about 8 KB: it reads its weights from the folder's own
`decoder.safetensors`, see `captioner.runtime.external_weights`), with `checksums.json` listing the sha256
of those files and of the weights they were made from (`captioner.runtime.checksums`).

`write_runtime(model, folder)` writes them (`scripts/ship_model.py`, `CaptionModel.save(runtime=True)`).
`CaptionModel.load` marks the encoder and decoder it loads with their folder (`mark_loaded`);
`runtime_file(module, name)` then gives the folder's file for that module when the folder has one, its
checksums match, the settings it was made for are the module's, and the module's weights have not
changed in memory since they were loaded (their version counters); else None, and the caller uses the
per-machine export cache (`captioner.runtime.onnx_runtime`). So a folder's runtime needs neither an
export nor hashing the weights at start-up, and it is the same file on every machine.

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from captioner.runtime.checksums import mismatches, read_checksums, write_checksums

ENCODER_FILE = "encoder.onnx"
STEP_FILE = "decoder_step.onnx"
RUNTIME_FILES = (ENCODER_FILE, STEP_FILE)
_ATTR = "_captioner_folder"
_warned: set[tuple[str, str]] = set()


# ---------------------------------------------------------------------------- which module came from where
def signature(module) -> tuple:
    """What changes when a module's weights change in memory: each tensor's name, shape, dtype and version
    counter (bumped by every in-place change: an optimizer step, `load_state_dict`, `add_`)."""
    return tuple((name, tuple(t.shape), str(t.dtype), t._version)
                 for name, t in module.state_dict(keep_vars=True).items())


def mark_loaded(model, folder: str | os.PathLike) -> None:
    """Remember that `model`'s encoder and decoder hold the weights of `folder` (call right after loading)."""
    folder = Path(folder)
    for module in (model.encoder, model.decoder):
        if module is not None:
            object.__setattr__(module, _ATTR, (folder, signature(module)))


def loaded_from(module) -> Path | None:
    """The folder `module`'s weights were loaded from, when they have not changed since; else None."""
    source = getattr(module, _ATTR, None)
    if not source:
        return None
    folder, sig = source
    return folder if sig == signature(module) else None


def runtime_file(module, name: str, **expect) -> Path | None:
    """The model folder's runtime file `name` for `module` (see the module docstring), or None. `expect`:
    settings the file must have been made for (e.g. `input_size=224`)."""
    folder = loaded_from(module)
    if folder is None:
        return None
    listed = read_checksums(folder)
    entry = (listed or {}).get("runtime", {}).get(name)
    if not isinstance(entry, dict):
        return None
    if any(entry.get(k) != v for k, v in expect.items()):
        return None
    bad = mismatches(folder, [name, *entry.get("needs", [])], listed["files"])
    if bad:
        if (str(folder), name) not in _warned:
            _warned.add((str(folder), name))
            warnings.warn(f"{folder}: {', '.join(bad)} differ from checksums.json, so its {name} is not used "
                          "(the per-machine ONNX export is); `python scripts/ship_model.py` writes them again",
                          RuntimeWarning, stacklevel=3)
        return None
    return folder / name


# ---------------------------------------------------------------------------- writing
def encoder_settings(model) -> dict:
    cfg = model.cfg
    return {"backbone": cfg.backbone, "grid": cfg.grid, "input_size": cfg.input_size,
            "fine_tune_blocks": cfg.fine_tune_blocks, "mean": list(model.mean), "std": list(model.std)}


def write_runtime(model, folder: str | os.PathLike) -> list[str]:
    """Write `encoder.onnx`, `decoder_step.onnx` and `checksums.json` into `folder`, a model folder already
    holding `model`'s weights (`CaptionModel.save`). Each graph is checked before it is kept: the encoder
    against the PyTorch encoder (within 1e-3), the step, which reads `decoder.safetensors`, against the
    plain export of the same step (bit for bit). Returns the names written. Needs torch and onnx."""
    import copy
    import tempfile

    import numpy as np
    import torch

    from captioner.atomic_write import atomic_path
    from captioner.model.folder import _load_into
    from captioner.runtime import onnx_runtime
    from captioner.runtime.external_weights import rewrite
    from captioner.runtime.fused_decoder import InferenceDecoder

    folder = Path(folder)
    if model.encoder is None:
        raise ValueError("the model has no encoder (loaded with with_encoder=False): load it whole to write its runtime")
    weights = folder / "decoder.safetensors"
    if not weights.is_file():
        raise ValueError(f"{folder} holds no decoder.safetensors: save the model there first")
    model.eval()
    size = model.cfg.input_size
    with atomic_path(folder / ENCODER_FILE, suffix=".onnx") as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        onnx_runtime.export_encoder(model.encoder, size, tmp)
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 4 - 2
        got = onnx_runtime._session(tmp, 1).run(["features"], {"image": x.numpy()})[0]
        want = model.encoder(x).numpy()
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-3, rtol=1e-3):
            raise RuntimeError(f"the exported encoder differs from the encoder (largest difference "
                               f"{float(np.abs(got - want).max()):.3g})")
    stored = copy.deepcopy(model.decoder).eval()  # the weights as saved (e.g. float16), which the step reads
    _load_into(stored, weights)
    fast = InferenceDecoder(stored)
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        plain = Path(scratch) / "step.onnx"
        onnx_runtime.export_step(fast, plain)
        with atomic_path(folder / STEP_FILE, suffix=".onnx") as tmp:
            rewrite(plain, weights, tmp)
            _check_same_step(plain, tmp, model)
    needs_encoder = ["encoder.safetensors"] if (folder / "encoder.safetensors").is_file() else []
    runtime = {
        ENCODER_FILE: {"needs": needs_encoder, **encoder_settings(model)},
        STEP_FILE: {"needs": ["decoder.safetensors"], "vocab_size": model.cfg.vocab_size},
        "made_with": {"torch": torch.__version__, "onnx": _onnx_version(), "opset": onnx_runtime.OPSET},
    }
    write_checksums(folder, [ENCODER_FILE, STEP_FILE, "decoder.safetensors", *needs_encoder], runtime)
    return [ENCODER_FILE, STEP_FILE, "checksums.json"]


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


def _check_same_step(plain: Path, folder_step: Path, model) -> None:
    """Raise unless the step reading the stored weights computes exactly what the plain export computes."""
    import numpy as np

    from captioner.runtime import onnx_runtime

    cfg = model.cfg
    feat_dim = model.decoder.attention.feature_proj.in_features
    rng = np.random.default_rng(0)
    rows, cells = 3, cfg.grid * cfg.grid
    feeds = {"features": rng.standard_normal((rows, cells, feat_dim), dtype=np.float32),
             "projected": rng.standard_normal((rows, cells, cfg.attention_dim), dtype=np.float32),
             "words": rng.integers(0, cfg.vocab_size, rows),
             "h": rng.standard_normal((rows, cfg.hidden_dim), dtype=np.float32),
             "c": rng.standard_normal((rows, cfg.hidden_dim), dtype=np.float32)}
    a = onnx_runtime._session(plain, 1).run(None, feeds)
    b = onnx_runtime._session(folder_step, 1).run(None, feeds)
    if not all(np.array_equal(x, y) for x, y in zip(a, b)):
        raise RuntimeError("the decoder step reading decoder.safetensors differs from the plain export")
