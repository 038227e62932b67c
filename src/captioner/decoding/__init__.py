"""Decoding: the decoding config, logit processors (the rules every decoder obeys), greedy and beam search.

Names are imported on first use: `captioner.decoding.config` alone (what the CLI's parser needs) does
not load torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Candidate": "captioner.decoding.candidate",
    "DecodingConfig": "captioner.decoding.config",
    "LogitProcessor": "captioner.decoding.processors",
    "decoding_rules": "captioner.decoding.processors",
    "beam_search": "captioner.decoding.search",
    "decode": "captioner.decoding.search",
    "greedy_decode": "captioner.decoding.search",
    "rank_key": "captioner.decoding.search",
    "StepDecoder": "captioner.decoding.step_decoder",
}

__all__ = ["Candidate", "DecodingConfig", "LogitProcessor", "StepDecoder", "beam_search", "decode", "decoding_rules",
           "greedy_decode", "rank_key"]

if TYPE_CHECKING:
    from captioner.decoding.candidate import Candidate
    from captioner.decoding.config import DecodingConfig
    from captioner.decoding.processors import LogitProcessor, decoding_rules
    from captioner.decoding.search import beam_search, decode, greedy_decode, rank_key
    from captioner.decoding.step_decoder import StepDecoder


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'captioner.decoding' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
