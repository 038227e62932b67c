"""How well a picture fits a text, in the captioner's own terms (used by image generation)."""
from __future__ import annotations

import torch

from captioner.errors import CaptionerError
from captioner.retrieval.index import scorer_for
from captioner.retrieval.likelihood import query_tokens


def prompt_likelihood(captioner, image, text: str) -> float:
    """The captioner's mean log-probability per word of `text` for `image` (a path, bytes, a PIL image):
    0 would be certain; everyday captions of a matching photo score about -1.5 to -3, unrelated ones
    -5 and below. Words the model does not know are not counted. Raises CaptionerError for an
    unreadable image or a text without any word the model knows."""
    tokens = query_tokens(captioner.model.vocab, text, captioner.decoding.max_len)
    if not tokens.usable:
        raise CaptionerError(f"'{text}' has no word the captioning model knows")
    prepared = captioner.prepare(image)
    if prepared.error:
        raise CaptionerError(prepared.error)
    grid = captioner.encode(prepared.pixels.unsqueeze(0))
    scorer = scorer_for(captioner)
    with torch.inference_mode():
        return float(scorer.text_likelihood(scorer.photos(grid), tokens)[0])
