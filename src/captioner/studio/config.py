"""The studio's settings and limits, importable without Gradio (`captioner studio`'s flags read them here).

`StudioConfig` holds what ``captioner studio`` sets (validated like every config, captioner.settings). The
sliders' limits are `DecodingConfig`'s own bounds, so the studio offers exactly what the library accepts.
"""
from __future__ import annotations

from dataclasses import dataclass

from captioner.decoding.config import DecodingConfig
from captioner.runtime.choice import RUNTIME_HELP, RUNTIMES
from captioner.settings import Settings, setting


@dataclass(frozen=True)
class StudioConfig(Settings):
    max_upload_mb: float = setting(50.0, "largest photo file accepted, in MB", above=0, hi=1 << 20)
    runtime: str = setting("onnx", RUNTIME_HELP + "; the Imagine tab, learning and anything the torch-free "
                           "runtime does not do load PyTorch when first used", choices=RUNTIMES)
    device: str = setting("cpu", "cpu, cuda or auto (cuda and auto run on PyTorch)")


#: Largest uploaded file accepted (MB) when ``--max-upload-mb`` is not given.
DEFAULT_MAX_UPLOAD_MB = StudioConfig().max_upload_mb
#: The beam-size slider's range: `DecodingConfig.beam_size`'s bounds.
MIN_BEAM, MAX_BEAM = DecodingConfig.bounds("beam_size")
#: The caption-length slider's range (words): `DecodingConfig.max_len`'s bounds.
MIN_LEN, MAX_LEN = DecodingConfig.bounds("max_len")
