"""ONNX Runtime twins of the CNN encoder and of one decoder step, for CPU inference.

On this project's 2-core CPU (benchmarks/bench_caption.py), ONNX Runtime runs the EfficientNet-Lite2
encoder about 1.3x faster than PyTorch, with features equal to about 5e-5, and one beam-search step
about 1.9x faster: its matrix products for a few rows (the beams of one photo) are several times
faster than PyTorch's. Each is exported once into a cache folder: `$CAPTIONER_CACHE_DIR`, else
`~/.cache/captioner`. Nothing is downloaded.

The file name is a hash of everything that changes the exported graph (`encoder_key`, `step_key`):
the weights and buffers, the module classes (their source) and configuration (every submodule's
settings, e.g. the encoder's pooling grid, which has no weights), the input size, the export code,
the opset and the torch and onnx versions. A cached file that ONNX Runtime cannot open (truncated, garbage) is
exported again. Files are written to a temporary file of their own and moved into place
(`os.replace`), so processes racing for the same file each write a complete one and readers never
see a partial file.

Privacy: official ONNX Runtime builds (1.29 and later, also on Linux and macOS) send usage events
to Microsoft (1DS telemetry: DNS lookups and HTTPS uploads to its events host, and an event store
with a device id under `$XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime`). Importing this
module sets `ORT_DISABLE_TELEMETRY=1` (documented in onnxruntime's Privacy.md), which ONNX Runtime
reads once, when it is first imported (it creates its environment then), and which turns its
telemetry off entirely: no uploader, events, device id or event store. `import_onnxruntime`, the
only way this module imports it, also calls `onnxruntime.disable_telemetry_events()` before any
session is created (that API alone would leave the start-up event and the device id).

A model folder may carry its own files (`encoder.onnx`, `decoder_step.onnx`, with `checksums.json`:
`captioner.runtime.folder_runtime`); they are used first, with no key to compute and no export, and
the cache is only the fallback for folders without them. Starting up imports onnxruntime, never
`onnx` (0.6 s, with ml_dtypes): only an export needs it.

`onnx_encoder_for` / `onnx_step_decoder_for` return None, and the caller keeps PyTorch, when
onnxruntime is not installed, when `CAPTIONER_ONNX=0`, or when the export fails (the reason is kept
in `last_error`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import re
import warnings
from pathlib import Path

import torch

from captioner.atomic_write import atomic_path
from captioner.decoding.step_decoder import StepWrapper
from captioner.runtime import folder_runtime
from captioner.runtime.ort_session import import_onnxruntime, session

# Before anything can import onnxruntime (see the module docstring): ONNX Runtime reads it once.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

#: the ONNX opset of both exports
OPSET = 17
#: part of every cache key (the export code itself is hashed into the keys): bump to drop old files
CACHE_FORMAT = 2

last_error: str | None = None
_failed: dict[str, str] = {}


def cache_dir() -> Path:
    return Path(os.environ.get("CAPTIONER_CACHE_DIR") or Path.home() / ".cache" / "captioner") / "onnx"


# ---------------------------------------------------------------------------- cache keys
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SIMPLE = (bool, int, float, str, type(None))


@functools.cache
def _code_id(obj) -> str:
    """A class's or function's name and a hash of its source: a change in its code can change the
    exported graph."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        source = ""
    return f"{obj.__module__}.{obj.__qualname__}#{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def _setting(value) -> str | None:
    """A plain setting as stable text (None for what is not a setting: tensors, modules, functions)."""
    if isinstance(value, _SIMPLE):
        return repr(value)
    if isinstance(value, (tuple, list)) and all(isinstance(v, _SIMPLE) for v in value):
        return repr(tuple(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. the encoder's backbone spec
        fields = ((f.name, _setting(getattr(value, f.name))) for f in dataclasses.fields(value))
        return f"{type(value).__qualname__}({', '.join(f'{n}={s}' for n, s in fields if s is not None)})"
    return None


def _hash_tensor(h, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy())  # the tensor's own memory: no copy


@functools.cache
def _onnx_version() -> str:
    """The installed onnx package's version, read from its metadata (importing onnx takes 0.6 s)."""
    from importlib import metadata

    try:
        return metadata.version("onnx")
    except metadata.PackageNotFoundError:
        return "-"


def _versions() -> str:
    onnx_version = _onnx_version()
    return f"format={CACHE_FORMAT} opset={OPSET} torch={torch.__version__} onnx={onnx_version}"


def _hash_module(h, module: torch.nn.Module) -> None:
    """Every submodule's class and settings (not its training mode: export runs in eval mode), its
    weights and buffers, and tensors kept as plain attributes."""
    h.update(_ADDRESS.sub("", repr(module)).encode())
    for name, mod in module.named_modules():
        h.update(f"\n[{name}] {_code_id(type(mod))}".encode())
        for attr, value in sorted(vars(mod).items()):
            if attr.startswith("_") or attr == "training":
                continue
            if isinstance(value, torch.Tensor):
                _hash_tensor(h, f"{name}.{attr}", value)
            elif (text := _setting(value)) is not None:
                h.update(f" {attr}={_ADDRESS.sub('', text)}".encode())
    for name, t in module.state_dict(keep_vars=False).items():
        _hash_tensor(h, name, t)


def encoder_key(encoder: torch.nn.Module, input_size: int) -> str:
    """A hash of everything that changes the exported encoder graph: the input size, the grid (the
    encoder's `grid` and its pooling), the backbone (the classes, their code, and the settings of
    all submodules), the weights and buffers, the export code, the opset and the torch and onnx
    versions."""
    exporter = " ".join(_code_id(f) for f in (export_encoder, _matrix_pooled, _MatrixPooledEncoder, _pool_matrix))
    h = hashlib.sha256(f"encoder input={input_size} grid={getattr(encoder, 'grid', None)} {exporter} {_versions()}".encode())
    _hash_module(h, encoder)
    return h.hexdigest()[:24]


_STEP_TENSORS = ("hid_w", "hid_b", "score_w", "score_b", "gate_w", "gate_b", "lstm_w", "lstm_b", "out_w", "out_b")


def step_key(fast) -> str:
    """A hash of everything that changes the exported decoder step: the fused decoder's class (its
    `step` code), its weights with their shapes, the embedding, the export code, the opset and the
    torch and onnx versions."""
    code = " ".join(_code_id(c) for c in (type(fast), _StepModule, export_step))
    h = hashlib.sha256(f"decoder-step {code} {_versions()}".encode())
    for name in _STEP_TENSORS:
        _hash_tensor(h, name, getattr(fast, name))
    _hash_module(h, fast.embedding)
    return h.hexdigest()[:24]


# ---------------------------------------------------------------------------- exports
def _pool_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in): adaptive average pooling along one axis as a matrix (PyTorch's bins)."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


class _MatrixPooledEncoder(torch.nn.Module):
    """`Encoder.forward` with its adaptive average pooling done as two matrix products. The exporter
    cannot pool a feature map to most grids (it needs the map's size, which the backbone's dynamic
    padding hides from it: 7 x 7 -> 14 x 14 fails, with pages of output), so an encoder that pools
    is exported this way, and kept only when ONNX Runtime then computes what the encoder computes."""

    def __init__(self, encoder: torch.nn.Module, fmap_hw: tuple[int, int]):
        super().__init__()
        self.trunk = encoder.trunk
        self.register_buffer("rows", _pool_matrix(encoder.grid, fmap_hw[0]))
        self.register_buffer("cols_t", _pool_matrix(encoder.grid, fmap_hw[1]).t().contiguous())

    def forward(self, images):
        pooled = torch.matmul(torch.matmul(self.rows, self.trunk(images)), self.cols_t)
        return pooled.permute(0, 2, 3, 1).contiguous()


def _matrix_pooled(encoder: torch.nn.Module, input_size: int) -> _MatrixPooledEncoder | None:
    """The matrix-pooled twin of `encoder` when it is the project's trunk + adaptive-average-pooling
    encoder and its feature map needs pooling to its grid, else None (export it as it is)."""
    trunk, pool, grid = getattr(encoder, "trunk", None), getattr(encoder, "pool", None), getattr(encoder, "grid", None)
    if not (isinstance(trunk, torch.nn.Module) and isinstance(pool, torch.nn.AdaptiveAvgPool2d) and isinstance(grid, int)):
        return None
    fmap_hw = tuple(trunk(torch.zeros(1, 3, input_size, input_size)).shape[-2:])
    if fmap_hw == (grid, grid):
        return None
    return _MatrixPooledEncoder(encoder, fmap_hw).eval()


def _check_export(path: Path, reference: torch.nn.Module, input_size: int) -> None:
    """Raise unless ONNX Runtime, running the file at `path`, gives what `reference` gives."""
    x = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)) * 4 - 2
    want = reference(x)
    got = torch.from_numpy(_session(path, 1).run(["features"], {"image": x.numpy()})[0])
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-3, rtol=1e-3):
        raise RuntimeError(f"the matrix-pooled ONNX encoder differs from the encoder ({tuple(got.shape)} vs "
                           f"{tuple(want.shape)}, largest difference {float((got - want).abs().max()):.3g})")


def export_encoder(encoder: torch.nn.Module, input_size: int, path: Path) -> None:
    """Write the encoder as ONNX with a dynamic batch dimension; an encoder that pools its feature
    map to its grid as `_MatrixPooledEncoder`, checked against the encoder."""
    example = torch.zeros(1, 3, input_size, input_size)
    was_training = encoder.training
    encoder.eval()
    try:
        twin = _matrix_pooled(encoder, input_size)
        torch.onnx.export(twin or encoder, (example,), str(path), input_names=["image"], output_names=["features"],
                          dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
        if twin is not None:
            _check_export(path, encoder, input_size)
    finally:
        encoder.train(was_training)


def _session(path: Path, threads: int):
    """An ONNX Runtime CPU session (`captioner.runtime.ort_session.session`: no spin-waiting threads)."""
    return session(path, max(1, threads))


def _unavailable() -> str | None:
    """Why ONNX Runtime cannot be used here, or None when it can."""
    if os.environ.get("CAPTIONER_ONNX", "1") == "0":
        return "disabled by CAPTIONER_ONNX=0"
    try:
        import_onnxruntime()  # not `onnx` (0.6 s, with ml_dtypes): only an export needs it (`_export`)
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    return None


def _export(make, path: Path) -> None:
    """`make(tmp)` into a temporary file of this exporter's own (process and thread), then move it
    onto `path` in one step: a reader, or another exporter racing for the same file, sees either the
    old file or a complete new one."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise RuntimeError("onnx is not installed (pip install onnx): the ONNX export needs it") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
        make(tmp)


def _twin(name: str, key_fn, make, open_, folder_file=None):
    """`open_(path)` of the model folder's own file (`folder_file()`, see
    `captioner.runtime.folder_runtime`) when there is one; else export with `make(path)` unless the
    cached file for this key (`key_fn()`, run only when ONNX Runtime is available) exists, then
    `open_(path)`. A cached file that cannot be opened (corrupt, truncated) is exported again, once.
    None (and `last_error`) when ONNX Runtime is unavailable or anything fails; a failure is not
    retried in this process."""
    global last_error
    reason = _unavailable()
    own = None if reason or folder_file is None else folder_file()
    if own is not None:
        try:
            return open_(own)
        except Exception as exc:  # a damaged folder file: the per-machine cache below
            warnings.warn(f"the model folder's {own} cannot be opened ({type(exc).__name__}: {exc}); "
                          "using the per-machine export", RuntimeWarning, stacklevel=3)
    key = None if reason else f"{name}-{key_fn()}"
    reason = reason or _failed.get(key)
    if reason:
        last_error = reason
        return None
    path = cache_dir() / f"{key}.onnx"
    try:
        if path.exists():
            try:
                return open_(path)
            except Exception as exc:  # a damaged file: export it again below
                warnings.warn(f"the cached ONNX file {path} cannot be opened ({type(exc).__name__}); "
                              "exporting it again", RuntimeWarning, stacklevel=3)
        _export(make, path)
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
    return _twin("encoder", lambda: encoder_key(encoder, input_size),
                 lambda path: export_encoder(encoder, input_size, path),
                 lambda path: OnnxEncoder(path, threads or torch.get_num_threads()),
                 lambda: folder_runtime.runtime_file(encoder, folder_runtime.ENCODER_FILE, input_size=input_size,
                                                     grid=getattr(encoder, "grid", None)))


class _StepModule(torch.nn.Module):
    """`InferenceDecoder.step` as a module, for export."""

    def __init__(self, fast):
        super().__init__()
        self.fast = fast
        self.embedding = fast.embedding

    def forward(self, features, projected, words, h, c):
        return self.fast.step(features, projected, words, h, c)


class OnnxStepDecoder(StepWrapper):
    """A decoder whose `step` runs in ONNX Runtime; `flatten`, `project` and `init_state` (once per
    image) stay in PyTorch (`inner`, the `InferenceDecoder`). On this CPU, ONNX Runtime multiplies the few rows
    of a beam search by the decoder's weight matrices about 3x faster than PyTorch (benchmarks/bench_caption.py)."""

    def __init__(self, fast, path: Path, threads: int):
        self.inner = fast
        self.vocab_size = fast.vocab_size
        self.embedding = fast.embedding
        self.path = path
        self.session = _session(path, threads)

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
                      opset_version=OPSET, dynamo=False)


def onnx_step_decoder_for(fast, threads: int | None = None):
    """An ONNX Runtime twin of `fast.step` (exported on first use per set of weights), or None."""
    return _twin("decoder-step", lambda: step_key(fast), lambda path: export_step(fast, path),
                 lambda path: OnnxStepDecoder(fast, path, threads or torch.get_num_threads()),
                 lambda: folder_runtime.runtime_file(getattr(fast, "decoder", None), folder_runtime.STEP_FILE,
                                                     vocab_size=fast.vocab_size))
