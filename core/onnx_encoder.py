"""The CNN encoder through ONNX Runtime, for CPU inference.

On this project's 2-core CPU, ONNX Runtime runs the EfficientNet-Lite2 encoder about 1.5x faster
than PyTorch at batch 1 and about 2x at batch 8 (benchmarks/bench_caption.py), with features equal
to about 2e-5. The encoder is exported once per set of encoder weights (a hash of them names the
file) into a cache folder: `$CAPTIONER_CACHE_DIR`, else `~/.cache/captioner`. Nothing is downloaded.

`onnx_encoder_for` returns None, and the caller keeps the PyTorch encoder, when onnxruntime is not
installed, when `CAPTIONER_ONNX=0`, or when the export fails (the reason is kept in `last_error`).
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
    """Write the encoder as ONNX with a dynamic batch dimension (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    example = torch.zeros(1, 3, input_size, input_size)
    was_training = encoder.training
    encoder.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic fixed by input_size
            torch.onnx.export(encoder, (example,), str(tmp), input_names=["image"], output_names=["features"],
                              dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}}, opset_version=17,
                              dynamo=False)
        os.replace(tmp, path)
    finally:
        encoder.train(was_training)
        tmp.unlink(missing_ok=True)


class OnnxEncoder:
    """Callable like the PyTorch encoder: (B, 3, S, S) float tensor -> (B, N, N, C) features."""

    def __init__(self, path: str | Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(["features"], {"image": x})[0])


def onnx_encoder_for(encoder: torch.nn.Module, input_size: int, threads: int | None = None) -> OnnxEncoder | None:
    """An ONNX Runtime twin of `encoder` (exported on first use), or None when unavailable."""
    global last_error
    if os.environ.get("CAPTIONER_ONNX", "1") == "0":
        last_error = "disabled by CAPTIONER_ONNX=0"
        return None
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        last_error = "onnx and onnxruntime are not installed (pip install onnx onnxruntime)"
        return None
    key = _weights_key(encoder, input_size)
    if key in _failed:  # do not pay for a failing export again in this process
        last_error = _failed[key]
        return None
    try:
        path = cache_dir() / f"encoder-{key}.onnx"
        if not path.exists():
            export_encoder(encoder, input_size, path)
        return OnnxEncoder(path, threads or torch.get_num_threads())
    except Exception as exc:  # any failure: the PyTorch encoder still works
        last_error = _failed[key] = f"{type(exc).__name__}: {exc}"
        return None
