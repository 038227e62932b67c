"""Writing a model folder's ONNX runtime (`encoder.onnx`, `decoder_step.onnx`, `checksums.json`; what they
are and how they are used: `captioner.runtime.folder_runtime`). Needs torch and onnx."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from captioner.atomic_write import atomic_path
from captioner.runtime import onnx_runtime
from captioner.runtime.checksums import write_checksums
from captioner.runtime.external_weights import rewrite
from captioner.runtime.folder_runtime import ENCODER_FILE, STEP_FILE
from captioner.runtime.fused_decoder import InferenceDecoder


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
    from safetensors.torch import load_file

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
    stored.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
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
