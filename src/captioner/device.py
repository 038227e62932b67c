"""Choosing the torch device from a user's word ("auto", "cpu", "cuda", "cuda:1"), with a clear error."""
from __future__ import annotations

import torch

from captioner.errors import ConfigError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" is CUDA when there is a GPU, else the CPU. Anything that cannot run here is a `ConfigError`."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is usable on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ConfigError(f"device {name!r} is not supported: use auto, cpu or cuda")
    return device
