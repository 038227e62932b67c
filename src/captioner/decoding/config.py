"""`DecodingConfig`: how captions are searched for. One per model, saved as `decoding.json` beside
`config.json`; every entry point (pipeline, CLI, studio, evaluation, training's validation) starts
from the model's and changes only what the user asks for.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from captioner.errors import ConfigError
from captioner.settings import Settings, setting

MAX_BEAM_SIZE = 20
MAX_CAPTION_LEN = 100
MAX_NGRAM = 10


def _remember_given(cls):
    """Wrap the dataclass's `__init__` so that each config knows the fields its caller set (`given`)."""
    init = cls.__init__
    names = [f.name for f in fields(cls)]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        object.__setattr__(self, "_given", frozenset(names[: len(args)]) | frozenset(kwargs))

    cls.__init__ = __init__
    return cls


@_remember_given
@dataclass(frozen=True)
class DecodingConfig(Settings):
    beam_size: int = setting(3, "beams to keep; 1 is greedy decoding", lo=1, hi=MAX_BEAM_SIZE)
    max_len: int = setting(30, "maximum words per caption", lo=1, hi=MAX_CAPTION_LEN)
    length_penalty: float = setting(
        0.0, "candidates are ranked by score / length ** length_penalty (0: summed log-probability)", lo=0.0, hi=5.0)
    no_repeat_ngram: int = setting(
        0, "never repeat an n-gram of this many words within a caption (0: off)", lo=0, hi=MAX_NGRAM)
    tag_bonus: float = setting(
        0.0, "grounded decoding: add this times a tag's probability to the log-probability of the tag's word "
        "(objects the backbone's ImageNet classifier sees; 0: off)", lo=0.0, hi=20.0)
    tag_min: float = setting(
        0.3, "grounded decoding: only tags at least this probable steer the caption", lo=0.0, hi=1.0)
    tag_unsure: float = setting(
        0.0, "grounded decoding: a caption that names none of the photo's tags gives way to the steered one only "
        "when its mean log-probability per word is below this (the model is unsure of it; 0: always)",
        lo=-20.0, hi=0.0)
    tag_reliable: float = setting(
        0.0, "grounded decoding: only tag words that people name in at least this share of the training photos "
        "the tagger sees them in steer (the model folder's tag_reliability.json; 0: every tag)", lo=0.0, hi=1.0)
    # the sentence bank (captioner.bank): human sentences that may replace the generated caption
    bank_shortlist: int = setting(
        0, "sentence bank: re-score this many bank sentences per photo, shortlisted by the first-stage "
        "projection, with the captioner's likelihood (0: off)", lo=0, hi=500)
    bank_prior: float = setting(
        0.0, "sentence bank: subtract this times a sentence's likelihood under the mean photo (what the "
        "captioner says of any photo)", lo=0.0, hi=2.0)
    bank_evidence: float = setting(
        0.0, "sentence bank: add this times a sentence's first-stage score (how well its words fit the "
        "photo's features)", lo=0.0, hi=100.0)
    bank_margin: float = setting(
        0.0, "sentence bank: the best bank sentence replaces the generated caption when its score beats "
        "the caption's by more than this", lo=-5.0, hi=5.0)
    bank_support: float = setting(
        0.0, "sentence bank: lower a sentence's (and the generated caption's) score by this times the mean per "
        "word of log(support_min / p) over its object words whose evidence p is below support_min",
        lo=0.0, hi=20.0)
    bank_unsure: float = setting(
        0.0, "sentence bank: consulted only for a photo whose generated caption's mean log-probability per word "
        "is below this (the model is unsure of it; 0: every photo)", lo=-20.0, hi=0.0)
    # the language-model prior (captioner.decoding.lm_prior): caption text's n-gram model fused into the search
    lm_weight: float = setting(
        0.0, "language-model prior: add this times log P(word | previous words) under an n-gram model of everyday "
        "caption text (COCO, Flickr30k; the model folder's lm_prior.npz or $CAPTIONER_LM_PRIOR) to the search's "
        "scores; captions keep the model's own score (0: off)", lo=0.0, hi=5.0)
    lm_swap: float = setting(
        0.0, "language-model prior: also subtract this times log P under an n-gram model of Flickr8k's training "
        "captions (the decoder's own prior), so the everyday prior replaces it (0: off)", lo=0.0, hi=5.0)
    lm_unsure: float = setting(
        0.0, "language-model prior: only for a photo whose caption without the prior has a mean log-probability per "
        "word below this (the model is unsure of it: searched again with the prior; 0: every photo)",
        lo=-20.0, hi=0.0)
    # object words the photo does not support (captioner.support)
    support_penalty: float = setting(
        0.0, "lower an object word (person, dog, snow, shirt ...) by this times the log of how far the photo's "
        "evidence for it falls below support_min (the model folder's support_head.safetensors and the "
        "ImageNet classifier; 0: off)", lo=0.0, hi=20.0)
    support_min: float = setting(
        0.1, "object words whose evidence is at least this probable are not lowered", lo=0.0, hi=1.0)
    no_echo: int = setting(
        0, "1: no word right after itself and none on both sides of 'and'/'or' ('white and white'); 0: off",
        lo=0, hi=1)
    # no bare noun after a copula (captioner.decoding.copula)
    no_bare_noun: int = setting(
        0, "n > 0: right after 'is' / 'are', no word that follows one fewer than n times in the training captions "
        "('a girl is bubbles'; counts from Flickr8k train); 0: off", lo=0, hi=1000)
    no_bare_subject: float = setting(
        0.0, "s > 0: no 'is' / 'are' right after a word found right before one in less than this share of its uses "
        "in the training captions ('a little brown is'; shares from Flickr8k train); 0: off", lo=0.0, hi=1.0)
    # the careful caption (captioner.support.careful)
    careful_penalty: float = setting(
        0.0, "careful caption: a photo whose caption the model is unsure of (careful_unsure) and that names an object "
        "word with evidence below careful_min is searched again with support_penalty this and support_min "
        "careful_min; that caption leads (source 'careful'; 0: off)", lo=0.0, hi=20.0)
    careful_min: float = setting(
        0.9, "careful caption: object words with evidence below this trigger it and are lowered in it", lo=0.0, hi=1.0)
    careful_unsure: float = setting(
        0.0, "careful caption: only for captions whose mean log-probability per word is below this (0: any)",
        lo=-20.0, hi=0.0)

    def replace(self, **changes) -> DecodingConfig:
        """A copy with the given fields changed; None means "keep this one" (unset CLI flags)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"decoding: unknown settings {sorted(unknown)}")
        if not changes:
            return self
        new = replace(self, **changes)
        object.__setattr__(new, "_given", self.given | frozenset(changes))
        return new

    @property
    def given(self) -> frozenset:
        """The fields this config's caller set: its constructor's arguments (also one equal to the default),
        the fields `replace` changed, the keys of a decoding.json (`from_dict`)."""
        return getattr(self, "_given", frozenset(f.name for f in fields(self)))

    def over(self, base: DecodingConfig) -> DecodingConfig:
        """`base` (a model's decoding) with the fields this config's caller set (`given`) taken from this one,
        as Hugging Face's GenerationConfig merges: `DecodingConfig(beam_size=3).over(model.decoding)` keeps the
        model's grounding, length penalty and n-gram rule. A config made from the model's (`replace`) is
        passed whole."""
        return base.replace(**{name: getattr(self, name) for name in self.given})

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict, where: str = "decoding") -> DecodingConfig:
        return super().from_dict(data, where, "decoding settings")

    @classmethod
    def load(cls, path: str | Path) -> DecodingConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the decoding settings ({exc})") from None
        return cls.from_dict(data, str(path))
