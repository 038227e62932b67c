"""ONNX Runtime twins of the CNN encoder and of one decoder step, for CPU inference.

On this project's 2-core CPU (benchmarks/bench_caption.py), ONNX Runtime runs the EfficientNet-Lite2
encoder about 1.3x faster than PyTorch, with features equal to about 5e-5, and one beam-search step
about 1.9x faster: its matrix products for a few rows (the beams of one photo) are several times
faster than PyTorch's. Each is exported once per set of weights (a hash of them names the file)
into a cache folder: `$CAPTIONER_CACHE_DIR`, else `~/.cache/captioner`. Nothing is downloaded.

`onnx_encoder_for` / `onnx_step_decoder_for` return None, and the caller keeps PyTorch, when
onnxruntime is not installed, when `CAPTIONER_ONNX=0`, or when the export fails (the reason is kept
in `last_error`).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

last_error: str | None = None
_failed: dict[str, str] = {}


def cache_dir() -> Path:
    return Path(os.environ.get("CAPTIONER_CACHE_DIR") or Path.home() / ".cache" / "captioner") / "onnx"


def _weights_key(encoder: torch.nn.Module, input_size: int) -> str:
    h = hashlib.sha256(f"{type(encoder).__name__}:{input_size}:{torch.__version__}".encode())
    for name, t in encoder.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def export_encoder(encoder: torch.nn.Module, input_size: int, path: Path) -> None:
    """Write the encoder as ONNX with a dynamic batch dimension."""
    example = torch.zeros(1, 3, input_size, input_size)
    was_training = encoder.training
    encoder.eval()
    try:
        torch.onnx.export(encoder, (example,), str(path), input_names=["image"], output_names=["features"],
                          dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False)
    finally:
        encoder.train(was_training)


def _session(path: Path, threads: int, spin: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _unavailable() -> str | None:
    """Why ONNX Runtime cannot be used here, or None when it can."""
    if os.environ.get("CAPTIONER_ONNX", "1") == "0":
        return "disabled by CAPTIONER_ONNX=0"
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnx and onnxruntime are not installed (pip install onnx onnxruntime)"
    return None


def _twin(name: str, weights_key, make, open_):
    """Export with `make(path)` unless the file for these weights exists, then `open_(path)`; None
    (and `last_error`) when ONNX Runtime is unavailable or anything fails. `weights_key()` hashes
    the weights; it runs only when ONNX Runtime is available."""
    global last_error
    reason = _unavailable()
    key = None if reason else f"{name}-{weights_key()}"
    reason = reason or _failed.get(key)  # a failed export is not retried in this process
    if reason:
        last_error = reason
        return None
    try:
        path = cache_dir() / f"{key}.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
                    make(tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return open_(path)
    except Exception as exc:  # any failure: PyTorch still works
        last_error = _failed[key] = f"{type(exc).__name__}: {exc}"
        return None


class OnnxEncoder:
    """Callable like the PyTorch encoder: (B, 3, S, S) float tensor -> (B, N, N, C) features."""

    def __init__(self, path: str | Path, threads: int):
        self.path = Path(path)
        self.session = _session(self.path, threads)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(["features"], {"image": x})[0])


def onnx_encoder_for(encoder: torch.nn.Module, input_size: int, threads: int | None = None) -> OnnxEncoder | None:
    """An ONNX Runtime twin of `encoder` (exported on first use), or None when unavailable."""
    return _twin("encoder", lambda: _weights_key(encoder, input_size), lambda path: export_encoder(encoder, input_size, path),
                 lambda path: OnnxEncoder(path, threads or torch.get_num_threads()))


class _StepModule(torch.nn.Module):
    """`InferenceDecoder.step` as a module, for export."""

    def __init__(self, fast):
        super().__init__()
        self.fast = fast
        self.embedding = fast.embedding

    def forward(self, features, projected, words, h, c):
        return self.fast.step(features, projected, words, h, c)


class OnnxStepDecoder:
    """A decoder whose `step` runs in ONNX Runtime; `flatten`, `project` and `init_state` (once per
    image) stay in PyTorch. On this CPU, ONNX Runtime multiplies the few rows of a beam search by the
    decoder's weight matrices about 3x faster than PyTorch (benchmarks/bench_caption.py)."""

    def __init__(self, fast, path: Path, threads: int):
        self.fast = fast
        self.vocab_size = fast.vocab_size
        self.embedding = fast.embedding
        self.path = path
        # no spin-waiting: PyTorch's beam bookkeeping runs between steps on the same cores
        self.session = _session(path, threads, spin=False)

    def flatten(self, features):
        return self.fast.flatten(features)

    def project(self, features):
        return self.fast.project(features)

    def init_state(self, features):
        return self.fast.init_state(features)

    def step(self, features, projected, words, h, c):
        feeds = {"features": features, "projected": projected, "words": words, "h": h, "c": c}
        out = self.session.run(None, {k: v.detach().contiguous().numpy() for k, v in feeds.items()})
        return tuple(torch.from_numpy(o) for o in out)


def export_step(fast, path: Path) -> None:
    """Write `fast.step` as ONNX, dynamic in the number of rows and grid cells."""
    rows, cells, feat_dim = 2, 4, fast.decoder.attention.feature_proj.in_features
    att_dim, hid = fast.hid_w.shape[1], fast.hid_w.shape[0]
    example = (torch.zeros(rows, cells, feat_dim), torch.zeros(rows, cells, att_dim),
               torch.zeros(rows, dtype=torch.long), torch.zeros(rows, hid), torch.zeros(rows, hid))
    by_rows = {n: {0: "rows"} for n in ("words", "h", "c", "logp", "h_out", "c_out")}
    by_rows_cells = {n: {0: "rows", 1: "cells"} for n in ("features", "projected", "alpha")}
    torch.onnx.export(_StepModule(fast), example, str(path), input_names=["features", "projected", "words", "h", "c"],
                      output_names=["logp", "h_out", "c_out", "alpha"], dynamic_axes={**by_rows, **by_rows_cells},
                      opset_version=17, dynamo=False)


def onnx_step_decoder_for(fast, threads: int | None = None):
    """An ONNX Runtime twin of `fast.step` (exported on first use per set of weights), or None."""

    def weights_key() -> str:
        h = hashlib.sha256(f"step:{torch.__version__}".encode())
        for name in ("hid_w", "hid_b", "score_w", "score_b", "gate_w", "gate_b", "lstm_w", "lstm_b", "out_w", "out_b"):
            h.update(getattr(fast, name).detach().cpu().contiguous().numpy().tobytes())
        h.update(fast.embedding.weight.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:20]

    return _twin("decoder-step", weights_key, lambda path: export_step(fast, path),
                 lambda path: OnnxStepDecoder(fast, path, threads or torch.get_num_threads()))
