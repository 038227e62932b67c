"""`StepDecoder`: what greedy decoding, beam search and SCST sampling need from a decoder.

`captioner.model.decoder.Decoder` (training and reference), `captioner.runtime.fused_decoder.InferenceDecoder`
(transposed, fused weights) and `captioner.runtime.onnx_runtime.OnnxStepDecoder` (its step in ONNX
Runtime) all implement it.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class StepDecoder(Protocol):
    vocab_size: int

    def flatten(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, N, C) or (B, P, C) encoder features -> (B, P, C)."""
        ...

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, C) -> (B, P, A): the features' half of the attention, computed once per image."""
        ...

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) of the LSTM from the mean feature."""
        ...

    def step(self, features: torch.Tensor, projected: torch.Tensor, words: torch.Tensor, h: torch.Tensor,
             c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One word for each row: (log-probabilities (R, V), h, c, attention (R, P))."""
        ...
