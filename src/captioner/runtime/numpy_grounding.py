"""Grounded decoding on numpy arrays: `captioner.tags.steering` (the rules `captioner.tags.grounding` runs
on torch tensors, written once) with the numpy search (`captioner.runtime.numpy_search.decode`): a photo's
confident tags become a bonus on their words, each tagged photo is searched side by side without and with
it, with the support penalty (`captioner.runtime.numpy_support`) and the words added at decode time
(`captioner.tags.new_words`).

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import numpy as np

from captioner.runtime.numpy_search import decode
from captioner.tags import steering


def decode_with_tags(tagger, decoder, features: np.ndarray, vocab, decoding, word_probs=None, reliability=None,
                     support=None, new_words=None):
    """`captioner.tags.grounding.decode_with_tags` on numpy arrays. `new_words`: a
    `captioner.tags.new_words.NewWords` (`captioner.runtime.numpy_new_words.load_new_words`). `tagger`: a
    `captioner.runtime.numpy_tagger.NumpyTagger`; `reliability`: anything with `share(word)` (the model
    folder's tag reliability); `support`: a `captioner.runtime.numpy_support.NumpySupport`. The sentence bank
    comes after the search (`captioner.bank.runtime.with_bank`, as on the PyTorch path)."""
    return steering.decode_with_tags(decode, tagger, decoder, features, vocab, decoding, new_words, word_probs,
                                     reliability, support)
