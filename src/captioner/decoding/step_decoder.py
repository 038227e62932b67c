"""`StepDecoder`: what greedy decoding, beam search and SCST sampling need from a decoder.

`captioner.model.decoder.Decoder` (training and reference), `captioner.runtime.fused_decoder.InferenceDecoder`
(transposed, fused weights) and `captioner.runtime.onnx_runtime.OnnxStepDecoder` (its step in ONNX
Runtime) all implement it. `StepWrapper` is the base of a decoder that changes only the step of another
(the ONNX step decoder, `captioner.tags.new_words.ExtendedStepDecoder`). Importing this module does not
import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
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


class StepWrapper:
    """A `StepDecoder` that changes only `step` of the decoder it wraps (`inner`): the parts computed once per
    image, `flatten`, `project` and `init_state`, are the wrapped decoder's. Subclasses set `inner`,
    `vocab_size` and `step`."""

    inner: StepDecoder

    def flatten(self, features):
        return self.inner.flatten(features)

    def project(self, features):
        return self.inner.project(features)

    def init_state(self, features):
        return self.inner.init_state(features)
