"""Greedy decoding and beam search on torch tensors, batched over images and beams, for any `StepDecoder`.

The loops are `captioner.decoding.beams`, written once for this path and the numpy one
(`captioner.runtime.numpy_search`); what may be emitted is decided by the logit processors of
`captioner.decoding.processors` (the same rules for every way of decoding). Scores are sums of the model's
log-probabilities of the emitted tokens (the final `<end>` included when emitted), so a teacher-forced
pass over a caption gives the same number.
"""
from __future__ import annotations

from functools import partial

import torch

from captioner.decoding import beams
from captioner.decoding.beams import rank_key
from captioner.decoding.candidate import Candidate
from captioner.decoding.config import DecodingConfig
from captioner.decoding.processors import TagBonus, apply_rules, decoding_rules
from captioner.decoding.step_decoder import StepDecoder
from captioner.model.vocab import Vocab

__all__ = ["Candidate", "beam_search", "decode", "greedy_decode", "rank_key", "rules_for"]


def rules_for(vocab: Vocab, cfg: DecodingConfig):
    """`decoding_rules` of `cfg` as one function of (logp, seqs, step)."""
    return partial(apply_rules, decoding_rules(vocab, cfg.no_repeat_ngram, cfg.no_echo,
                                               getattr(cfg, "no_bare_noun", 0),
                                               getattr(cfg, "no_bare_subject", 0.0)))


@torch.inference_mode()
def greedy_decode(decoder: StepDecoder, features: torch.Tensor, vocab: Vocab,
                  cfg: DecodingConfig = DecodingConfig(), steer: TagBonus | None = None) -> list[Candidate]:
    """The most likely word at each step, for a batch of images (B, N, N, C) or (B, P, C) (`beams.greedy_decode`)."""
    return beams.greedy_decode(decoder, features, vocab, cfg, rules_for(vocab, cfg), steer)


@torch.inference_mode()
def beam_search(decoder: StepDecoder, features: torch.Tensor, vocab: Vocab,
                cfg: DecodingConfig = DecodingConfig(), steer: TagBonus | None = None) -> list[list[Candidate]]:
    """The `cfg.beam_size` best distinct captions for each image, best first (`beams.beam_search`)."""
    return beams.beam_search(decoder, features, vocab, cfg, rules_for(vocab, cfg), steer)


def decode(decoder: StepDecoder, features: torch.Tensor, vocab: Vocab,
           cfg: DecodingConfig = DecodingConfig(), steer: TagBonus | None = None) -> list[list[Candidate]]:
    """Candidates for each image: greedy for beam size 1 (the same caption beam 1 gives), else beam
    search; `steer`: grounded decoding's per-image word bonus (see `TagBonus`)."""
    if cfg.beam_size <= 1:
        return [[c] for c in greedy_decode(decoder, features, vocab, cfg, steer)]
    return beam_search(decoder, features, vocab, cfg, steer)
