"""Decoding: the decoding config, logit processors (the rules every decoder obeys), greedy and beam search."""
from captioner.decoding.candidate import Candidate
from captioner.decoding.config import DecodingConfig
from captioner.decoding.processors import LogitProcessor, decoding_rules
from captioner.decoding.search import beam_search, decode, greedy_decode, rank_key
from captioner.decoding.step_decoder import StepDecoder

__all__ = ["Candidate", "DecodingConfig", "LogitProcessor", "StepDecoder", "beam_search", "decode", "decoding_rules",
           "greedy_decode", "rank_key"]
