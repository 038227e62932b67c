"""Decoding: the decoding config, logit processors (the rules every decoder obeys), greedy and beam search.

Names are imported on first use: `captioner.decoding.config` alone (what the CLI's parser needs) does
not load torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from captioner._lazy import lazy_exports

_EXPORTS = {
    "captioner.decoding.candidate": ("Candidate",),
    "captioner.decoding.config": ("DecodingConfig",),
    "captioner.decoding.processors": ("LogitProcessor", "decoding_rules"),
    "captioner.decoding.search": ("beam_search", "decode", "greedy_decode", "rank_key"),
    "captioner.decoding.step_decoder": ("StepDecoder",),
}

__all__ = ["Candidate", "DecodingConfig", "LogitProcessor", "StepDecoder", "beam_search", "decode", "decoding_rules",
           "greedy_decode", "rank_key"]

if TYPE_CHECKING:
    from captioner.decoding.candidate import Candidate
    from captioner.decoding.config import DecodingConfig
    from captioner.decoding.processors import LogitProcessor, decoding_rules
    from captioner.decoding.search import beam_search, decode, greedy_decode, rank_key
    from captioner.decoding.step_decoder import StepDecoder


__getattr__ = lazy_exports(__name__, _EXPORTS)
