"""Measuring a model on held-out edits: captions decoded from stored encoder grids exactly as
`Captioner` decodes them (the model folder's decoding, grounded with its tagger and extras), CIDEr-D
against the user's own captions, and the share of photos whose caption changed."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from captioner.decoding.config import DecodingConfig
from captioner.evaluation.cider import CiderD
from captioner.model.vocab import tokenize


@dataclass
class Decoded:
    """One photo decoded from its grid: the candidates (best first), the tagger's tags, and the support
    evidence per concept (None without a support head): what the confidence calibration reads."""

    candidates: list
    tags: list
    presence: dict | None

    @property
    def caption(self) -> str:
        return self.candidates[0].caption if self.candidates else ""


class FeatureCaptioner:
    """Captions from encoder grids for a decoder-only `CaptionModel`: what `Captioner.decode` does,
    without the encoder (grounding with the tagger, the new words and the tag reliability; the support
    penalty with the folder's support head). The careful caption and the language-model prior, which
    the shipped decoding leaves off, are not applied. `extras`: `pipeline.folder_extras` of the model
    folder."""

    def __init__(self, model, extras: dict, decoding: DecodingConfig | None = None):
        from captioner.tags.tagger import ObjectTagger

        self.model, self.decoding = model, decoding or model.decoding
        self.new_words, self.reliability = extras.get("new_words"), extras.get("tag_reliability")
        head = extras.get("support_head")
        # as `Captioner`: the tagger for grounding, the support evidence and the tags
        self.tagger = ObjectTagger.for_backbone(model.cfg.backbone) \
            if self.decoding.tag_bonus > 0 or head is not None else None
        self.support = None
        if head is not None:
            from captioner.support.penalty import SupportEvidence

            self.support = SupportEvidence(head, self.tagger.labels if self.tagger is not None else None)

    @torch.inference_mode()
    def decode(self, grids: list[np.ndarray], batch_size: int = 32) -> list[Decoded]:
        from captioner.runtime.fused_decoder import InferenceDecoder
        from captioner.tags.grounding import decode_with_tags

        self.model.decoder.eval()
        fast = InferenceDecoder(self.model.decoder)
        penalised = self.support if self.decoding.support_penalty > 0 else None
        out = []
        for s in range(0, len(grids), batch_size):
            feats = torch.from_numpy(np.stack([np.asarray(g, dtype=np.float32) for g in grids[s : s + batch_size]]))
            side = int(round(feats.shape[1] ** 0.5))
            feats = feats.reshape(len(feats), side, side, -1)
            word_probs = self.tagger.word_probabilities(feats) if self.tagger is not None else None
            cands = decode_with_tags(self.tagger, fast, feats, self.model.vocab, self.decoding, self.new_words,
                                     word_probs, self.reliability, penalised)
            tags = self.tagger.tags_from_word_probabilities(word_probs) if self.tagger is not None \
                else [[] for _ in cands]
            presence = self.support.presence(feats, word_probs).tolist() if self.support is not None else None
            for n, c in enumerate(cands):
                out.append(Decoded(list(c), tags[n], dict(zip(self.support.names, presence[n]))
                                   if presence is not None else None))
        return out

    def captions(self, grids: list[np.ndarray], batch_size: int = 32) -> list[str]:
        return [d.caption for d in self.decode(grids, batch_size)]


@dataclass
class HeldOutScores:
    """Before/after figures on held-out edits: CIDEr-D (x100, against the user's captions, document
    frequencies from those captions), and the share of photos whose caption changed."""

    n: int
    cider_before: float
    cider_after: float
    changed: float

    @property
    def worse(self) -> bool:
        return self.cider_after < self.cider_before

    def to_dict(self) -> dict:
        return {"held_out_edits": self.n, "cider_before": round(self.cider_before, 2),
                "cider_after": round(self.cider_after, 2), "changed_share": round(self.changed, 3)}


def cider(captions: list[str], references: list[list[str]]) -> float:
    """Mean CIDEr-D (x100) of `captions` against `references` (one list per photo)."""
    refs = [[tokenize(r) for r in rs] for rs in references]
    scorer = CiderD(refs)
    return 100.0 * float(np.mean([scorer.score(tokenize(c), r) for c, r in zip(captions, refs)]))


def held_out_scores(before: list[str], after: list[str], user: list[str]) -> HeldOutScores:
    refs = [[u] for u in user]
    changed = float(np.mean([tokenize(a) != tokenize(b) for a, b in zip(after, before)])) if user else 0.0
    return HeldOutScores(len(user), cider(before, refs), cider(after, refs), changed)


def split_held_out(keys: list[str], share: float, minimum: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train, held-out) indexes: with at least `minimum` keys, `share` of them held out, chosen by a hash
    of each key and `seed` (the same edits are held out on every run); otherwise all train."""
    if len(keys) < minimum or share <= 0:
        return list(range(len(keys))), []
    n_out = max(1, int(round(share * len(keys))))
    order = sorted(range(len(keys)), key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).hexdigest())
    held = sorted(order[:n_out])
    held_set = set(held)
    return [i for i in range(len(keys)) if i not in held_set], held
