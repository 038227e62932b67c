"""The steps a captioner's decoding runs around its search, in their order, written once for the PyTorch path
(`captioner.pipeline.Captioner.decode`) and the torch-free one (`captioner.runtime.lean.LeanCaptioner.decode`):

1. the careful caption (`captioner.support.careful`), where `careful_penalty` > 0 and the model folder has a
   support head: the descriptive search, then a strict one for the photos it triggers on;
2. the language-model prior gated by the model's confidence (`captioner.decoding.lm_prior.unsure_decode`), where
   `lm_unsure` < 0 and the prior is on: a search without the prior, then one with it for the unsure photos;
3. the search itself (the caller's `search`: plain, or grounded with the tag bonus, the support penalty and the
   new words), which adds the prior to every step itself when it is on without a gate.

Each step calls the steps after it, so a careful caption is searched with the gated prior as well. Everything
here runs on candidates and on features indexed by a list of photos: torch tensors or numpy arrays alike.
Importing this module does not import torch.
"""
from __future__ import annotations

from collections.abc import Callable


def staged_decode(search: Callable, features, decoding, word_probs=None, captioner=None) -> list[list]:
    """Candidates for each photo (best first). `search(features, decoding, word_probs)`: the captioner's search;
    `decoding`: the whole `DecodingConfig` (the model's, with the caller's fields laid over it); `captioner`:
    anything with `support` (the model folder's evidence: `captioner.support.penalty.SupportEvidence` or
    `captioner.runtime.numpy_support.NumpySupport`; None: no careful caption) and `tagger` (its ImageNet tagger,
    for `word_probs` when not given), read only when the careful caption is on."""

    def rest(f, d, w):
        return staged_decode(search, f, d, w, captioner)

    support = captioner.support if decoding.careful_penalty > 0 and captioner is not None else None
    if support is not None:
        from captioner.support.careful import careful_decode

        return careful_decode(rest, features, decoding, support, captioner.tagger, word_probs)
    if decoding.lm_unsure < 0 and (decoding.lm_weight > 0 or decoding.lm_swap > 0):
        from captioner.decoding.lm_prior import unsure_decode

        return unsure_decode(rest, features, decoding, word_probs)
    return search(features, decoding, word_probs)
