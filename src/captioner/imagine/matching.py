"""How well a generated image matches its prompt, in the captioner's own terms.

For each image: the caption the captioner writes for it, and the captioner's teacher-forced,
length-normalised log-likelihood of the prompt given the image (mean log-probability per known word
and the end of the sentence; words the captioner does not know are listed, not scored), with the
same figure for its own caption as the yardstick: a prompt about as likely as the caption the model
would write itself is a good match.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PromptMatch:
    """The captioner's verdict on one image and one prompt."""

    caption: str | None
    prompt_score: float | None     # mean log-probability per scored token of the prompt (<= 0)
    caption_score: float | None    # the same for the captioner's own caption
    unknown_words: list[str] = field(default_factory=list)

    @property
    def word_probability(self) -> float | None:
        """exp(prompt_score): the geometric-mean probability of each word of the prompt."""
        return None if self.prompt_score is None else math.exp(self.prompt_score)

    @property
    def relative(self) -> float | None:
        """exp(prompt_score - caption_score): per word, how likely the prompt is next to the model's
        own caption (about 1: as likely as what the model would say; 0.1: ten times less likely per word)."""
        if self.prompt_score is None or self.caption_score is None:
            return None
        return math.exp(self.prompt_score - self.caption_score)

    def to_dict(self) -> dict:
        def r(x):
            return None if x is None else round(float(x), 4)
        return {"caption": self.caption, "prompt_log_likelihood": r(self.prompt_score),
                "caption_log_likelihood": r(self.caption_score), "word_probability": r(self.word_probability),
                "relative_to_caption": r(self.relative), "unknown_words": list(self.unknown_words)}


def text_scores(captioner, grid: np.ndarray, texts: list[str]) -> list[tuple[float | None, list[str]]]:
    """For each text: its mean log-probability per scored token given the encoder grid (N*N, C), and the
    words the captioner does not know (None when no word of the text is known)."""
    from captioner.retrieval.likelihood import Scorer, query_tokens

    scorer = Scorer(captioner.model.decoder)
    photos = scorer.photos(np.asarray(grid, dtype=np.float32)[None])
    out = []
    for text in texts:
        query = query_tokens(captioner.model.vocab, text)
        score = float(scorer.text_likelihood(photos, query)[0]) if query.usable else None
        out.append((score, list(query.unknown)))
    return out


def match_prompt(captioner, result, prompt: str) -> PromptMatch:
    """`result`: a `CaptionResult` made with ``keep_features=True``."""
    if result.error or result.features is None:
        return PromptMatch(result.caption, None, None)
    texts = [prompt] + ([result.caption] if result.caption else [])
    scores = text_scores(captioner, result.features, texts)
    caption_score = scores[1][0] if len(scores) > 1 else None
    return PromptMatch(result.caption, scores[0][0], caption_score, scores[0][1])
