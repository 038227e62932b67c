"""Which engine captions: the torch-free `captioner.runtime.lean.LeanCaptioner` (ONNX Runtime and numpy) where it
does everything asked, else the PyTorch `captioner.pipeline.Captioner` (the reference, the same output). One
choice for every entry point that loads a model folder to caption or score with (`captioner find`, the studio,
its model picker).

    from captioner.runtime.choice import load_captioner
    captioner = load_captioner(None)                      # the shipped model, without importing torch
    captioner = load_captioner(folder, runtime="torch")   # the PyTorch path

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import os
from collections.abc import Callable

#: `runtime` values: "onnx" (torch-free where possible) and "torch" (the PyTorch reference path)
RUNTIMES = ("onnx", "torch")
#: what a `runtime` setting says, for flags and settings
RUNTIME_HELP = ("onnx: ONNX Runtime and numpy, without importing PyTorch (a model folder without its ONNX runtime "
                "or a device other than the CPU falls back to torch by itself); torch: the PyTorch reference path")


def torch_reason(runtime: str = "onnx", device: str = "cpu") -> str | None:
    """Why the PyTorch path is asked for before any folder is read (None: nothing): `runtime` "torch", or a
    device other than the CPU (only PyTorch runs on a GPU)."""
    if runtime not in RUNTIMES:
        from captioner.errors import ConfigError

        raise ConfigError(f"unknown runtime {runtime!r}: use {' or '.join(RUNTIMES)}")
    if runtime == "torch":
        return "--runtime torch"
    if str(device) != "cpu":
        return f"--device {device}"
    return None


def is_lean(captioner) -> bool:
    """Whether `captioner` is the torch-free one (it has no PyTorch `model`)."""
    return getattr(captioner, "model", None) is None


def load_captioner(model: str | os.PathLike | None = None, *, runtime: str = "onnx", device: str = "cpu",
                   threads: int = 0, needs: Callable | None = None):
    """The captioner of model folder `model` (None: $CAPTIONER_MODEL, else the shipped model): a `LeanCaptioner`
    when `runtime` is "onnx", `device` the CPU, the folder carries its ONNX runtime and `needs(lean)` (what the
    caller will ask of it, e.g. `lambda lean: needs_torch(lean.decoding)`) names nothing only PyTorch does; else
    `Captioner.from_pretrained(model, device)`, which imports torch (and says what is wrong with a broken
    folder). `threads`: ONNX Runtime's (or torch's) threads, 0 for the default."""
    if torch_reason(runtime, device) is None:
        from captioner.errors import ModelLoadError
        from captioner.runtime.lean import LeanCaptioner

        try:
            lean = LeanCaptioner(model, threads=threads)
        except ModelLoadError:  # no ONNX runtime in the folder (or a broken one): PyTorch says what is wrong
            lean = None
        if lean is not None and (needs is None or needs(lean) is None):
            return lean
    import torch

    from captioner.pipeline import Captioner

    if threads:
        torch.set_num_threads(threads)
    return Captioner.from_pretrained(model, device=device)
