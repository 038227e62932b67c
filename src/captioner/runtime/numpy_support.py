"""The support penalty in numpy (`captioner.support.penalty.SupportEvidence`): how well a photo supports each
object word (the model folder's word-presence head, or the ImageNet words where larger) and the (B, V) penalty
on the words it does not support. Reads `support_head.safetensors` without torch. Importing this module
imports neither torch nor onnx."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from captioner.evaluation.hallucination import concept_of
from captioner.runtime.external_weights import SafetensorsFile
from captioner.support.scene import SceneAgainst

HEAD_FILE = "support_head.safetensors"
GENERAL = ("animal", "vehicle", "food", "room")  # as captioner.support.penalty.GENERAL


class NumpySupport:
    def __init__(self, names: list[str], weight: np.ndarray, bias: np.ndarray, tagger_labels: list[str] | None,
                 against: dict | None = None):
        self.names = list(names)
        self._cols: dict = {}
        self.weight_t = np.ascontiguousarray(np.asarray(weight, np.float32).T)
        self.bias = np.asarray(bias, np.float32)
        index = {c: k for k, c in enumerate(self.names)}
        pairs = [(j, index[c]) for j, label in enumerate(tagger_labels or [])
                 if " " not in label and "-" not in label and (c := concept_of(label)) in index]
        self.label_ids = np.array([p[0] for p in pairs], dtype=np.int64)
        self.label_concepts = np.array([p[1] for p in pairs], dtype=np.int64)
        self.scene = SceneAgainst(against, tagger_labels, self.names)  # as SupportEvidence

    @classmethod
    def load(cls, folder: str | Path, tagger_labels: list[str] | None) -> NumpySupport | None:
        path = Path(folder) / HEAD_FILE
        if not path.is_file():
            return None
        import struct

        with open(path, "rb") as fh:  # the names are in the header's metadata
            (n,) = struct.unpack("<Q", fh.read(8))
            meta = json.loads(fh.read(n)).get("__metadata__", {})
        f = SafetensorsFile(path)
        return cls(json.loads(meta["names"]), f.array("weight").astype(np.float32), f.array("bias").astype(np.float32),
                   tagger_labels, json.loads(meta.get("about", "{}")).get("against"))

    def presence(self, features: np.ndarray, word_probs: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(features, np.float32)
        x = x.mean(axis=(1, 2)) if x.ndim == 4 else x.mean(axis=1) if x.ndim == 3 else x
        p = 1.0 / (1.0 + np.exp(-(x @ self.weight_t + self.bias)))
        p = p.astype(np.float32)
        if word_probs is not None:
            p = self.scene.apply(p, np.asarray(word_probs, np.float32))
        if word_probs is not None and len(self.label_ids):
            img = np.zeros_like(p)
            np.maximum.at(img, (slice(None), self.label_concepts),
                          word_probs.astype(np.float32)[:, self.label_ids])
            p = np.maximum(p, img)
        return p

    def columns(self, vocab) -> tuple[np.ndarray, np.ndarray]:
        """(vocabulary ids, concept ids) of the vocabulary's object words with a lowered concept, worked out once
        per vocabulary (as `captioner.support.penalty.SupportEvidence.columns`; about 8 ms a caption before)."""
        hit = self._cols.get(id(vocab))
        if hit is None or hit[0] is not vocab:  # ids are reused once objects are freed
            index = {c: k for k, c in enumerate(self.names) if c not in GENERAL}
            pairs = [(v, index[c]) for v, w in enumerate(vocab.itos) if (c := concept_of(w)) in index]
            hit = self._cols[id(vocab)] = (vocab, (np.array([p[0] for p in pairs], dtype=np.int64),
                                                   np.array([p[1] for p in pairs], dtype=np.int64)))
        return hit[1]

    def penalty(self, presence: np.ndarray, vocab, strength: float, minimum: float) -> np.ndarray | None:
        if strength <= 0 or minimum <= 0:
            return None
        vocab_ids, concept_ids = self.columns(vocab)
        deficit = np.maximum(np.float32(math.log(minimum)) - np.log(np.maximum(presence, np.float32(1e-6))),
                             np.float32(0))
        if not (deficit[:, concept_ids] > 0).any():
            return None
        out = np.zeros((len(presence), len(vocab)), dtype=np.float32)
        out[:, vocab_ids] = np.float32(-strength) * deficit[:, concept_ids]
        return out
