"""How well a photo supports each object word, and the decoding penalty on the words it does not support.

`SupportEvidence` merges two sources into one presence probability per concept of
`captioner.evaluation.hallucination` (the same concepts and synonyms the hallucination measure uses):

- the word-presence head (`SupportHead`, trained on Flickr8k train with labels from its captions): the
  only evidence about people, clothing and settings;
- the ImageNet classifier's word probabilities (`ObjectTagger.word_probabilities`, the summed mass of
  a word's classes: every dog breed counts for `dog`), for the concepts its words name.

A concept's presence is the larger of the two (either may see it), after the head's presence of people, dogs and
outdoor settings is lowered in an everyday object scene (`captioner.support.scene`, when the head's metadata asks). `penalty` turns presence into a
(B, V) term for beam search: an object word whose concept's presence `p` is below
`DecodingConfig.support_min` gets `-support_penalty * log(support_min / p)`; words of general concepts
(`animal`, `food`, `room`: the careful way to say it) and words without a concept get none.
"""
from __future__ import annotations

import math

import torch

from captioner.evaluation.hallucination import concept_of
from captioner.support.head import SupportHead
from captioner.support.scene import SceneAgainst

#: concepts never lowered: naming the kind of thing is the careful choice
GENERAL = ("animal", "vehicle", "food", "room")


class SupportEvidence:
    def __init__(self, head: SupportHead, tagger_labels: list[str] | None = None):
        self.head = head
        self.names = list(head.names)
        index = {c: k for k, c in enumerate(self.names)}
        pairs = []  # (tagger label id, concept id)
        for j, label in enumerate(tagger_labels or []):
            c = concept_of(label) if " " not in label and "-" not in label else None
            if c in index:
                pairs.append((j, index[c]))
        self.label_ids = torch.tensor([p[0] for p in pairs], dtype=torch.long)
        self.label_concepts = torch.tensor([p[1] for p in pairs], dtype=torch.long)
        self._cols: dict = {}
        self.scene = SceneAgainst(head.about.get("against"), tagger_labels, self.names)

    def presence(self, features: torch.Tensor, word_probs: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) presence probability of each concept (`self.names`): the head's, or the ImageNet
        words' (the largest of the concept's words) where that is larger; the head's lowered first in an
        everyday object scene (`captioner.support.scene`)."""
        p = self.head.probabilities(features)
        if word_probs is not None:
            p = self.scene.apply(p, word_probs.float())
        if word_probs is not None and len(self.label_ids):
            img = torch.zeros_like(p)
            img.scatter_reduce_(1, self.label_concepts.expand(len(p), -1), word_probs.float()[:, self.label_ids],
                                reduce="amax")
            p = torch.maximum(p, img)
        return p

    def columns(self, vocab) -> tuple[torch.Tensor, torch.Tensor]:
        """(vocabulary ids, concept ids) of the vocabulary's object words with a lowered concept."""
        hit = self._cols.get(id(vocab))
        if hit is None or hit[0] is not vocab:  # ids are reused once objects are freed
            index = {c: k for k, c in enumerate(self.names) if c not in GENERAL}
            pairs = [(v, index[c]) for v, w in enumerate(vocab.itos) if (c := concept_of(w)) in index]
            cols = (torch.tensor([p[0] for p in pairs], dtype=torch.long),
                    torch.tensor([p[1] for p in pairs], dtype=torch.long))
            hit = self._cols[id(vocab)] = (vocab, cols)
        return hit[1]

    def penalty(self, presence: torch.Tensor, vocab, strength: float, minimum: float) -> torch.Tensor | None:
        """(B, V) 0 or negative: `-strength * log(minimum / p)` on the object words whose concept's
        presence p is below `minimum`; None when no word of the batch is lowered."""
        if strength <= 0 or minimum <= 0:
            return None
        vocab_ids, concept_ids = self.columns(vocab)
        deficit = (math.log(minimum) - presence.clamp_min(1e-6).log()).clamp_min(0.0)  # (B, K)
        if not bool((deficit[:, concept_ids] > 0).any()):
            return None
        out = torch.zeros(len(presence), len(vocab))
        out[:, vocab_ids] = -strength * deficit[:, concept_ids]
        return out

    def support(self, tokens: list[str], presence_row: torch.Tensor) -> list[float | None]:
        """Each word's concept presence (None: no object word, or a concept without evidence), for
        showing how well a caption's words are supported."""
        index = {c: k for k, c in enumerate(self.names)}
        out = []
        for t in tokens:
            c = concept_of(t)
            out.append(float(presence_row[index[c]]) if c in index else None)
        return out
