"""How well a generated image matches its prompt, in the captioner's own terms.

For each image: the caption the captioner writes for it, and the captioner's teacher-forced,
length-normalised log-likelihood of the prompt given the image (`captioner.retrieval.prompt_likelihood`:
mean log-probability per known word; words the captioner does not know are listed, not scored), with
the same figure for its own caption as the yardstick: a prompt about as likely as the caption the model
would write itself is a good match.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


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


def _likelihood(captioner, image, text: str) -> float | None:
    """`prompt_likelihood` (captioner.retrieval), or None for a text without a word the model knows."""
    from captioner.errors import CaptionerError
    from captioner.retrieval.prompt import prompt_likelihood

    try:
        return prompt_likelihood(captioner, image, text)
    except CaptionerError:
        return None


def match_prompt(captioner, image, result, prompt: str) -> PromptMatch:
    """How well `image` (a PIL image) fits `prompt`; `result`: the image's `CaptionResult`."""
    from captioner.retrieval.likelihood import query_tokens

    if result.error:
        return PromptMatch(None, None, None)
    unknown = list(query_tokens(captioner.model.vocab, prompt, captioner.decoding.max_len).unknown)
    caption_score = _likelihood(captioner, image, result.caption) if result.caption else None
    return PromptMatch(result.caption, _likelihood(captioner, image, prompt), caption_score, unknown)
