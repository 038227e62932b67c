"""Find-by-description's cheap first stage: a linear map from a description's words to the pooled encoder
features of the photos it fits, so every gallery photo is ranked by one dot product before the exact
(and costly) likelihood scores only the best of them.

The map is a ridge regression fitted on Flickr8k's training captions against their photos' pooled
features (scripts/fit_query_projection.py; never on validation or test photos), kept low-rank in
`query_projection.safetensors` beside the model's weights (float16, under 1 MB):
`words` (vocab x rank) and `basis` (rank x C). A query's vector is its bag of known words (unit length)
times `words` times `basis`; a photo's first-stage score is that vector's dot product with its unit
pooled vector (`PhotoIndex.pooled`). The file names the model it was fitted for; with another model
(another encoder or vocabulary) no first stage is used and `find` shortlists as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.atomic_write import atomic_path

FILE_NAME = "query_projection.safetensors"


def bag_of_words(token_ids, vocab_size: int, skip=(0, 1, 2, 3)) -> np.ndarray:
    """A text's known words (vocabulary ids, special tokens skipped) as a unit-length presence vector."""
    x = np.zeros(vocab_size, np.float32)
    ids = [i for i in token_ids if i not in skip and 0 <= i < vocab_size]
    if ids:
        x[np.unique(ids)] = 1.0
        x /= np.sqrt(np.count_nonzero(x))
    return x


@dataclass
class QueryProjection:
    words: np.ndarray   # (V, rank) float32
    basis: np.ndarray   # (rank, C) float32
    model_name: str = ""

    @property
    def vocab_size(self) -> int:
        return self.words.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.basis.shape[1]

    def query_vector(self, vocab, text: str) -> np.ndarray:
        """(C,) float32: where the description's photos should lie in pooled-feature space."""
        ids = vocab.encode(text)
        return (bag_of_words(ids, self.vocab_size, _special_ids(vocab)) @ self.words) @ self.basis

    @staticmethod
    def scores(vector: np.ndarray, pooled) -> np.ndarray:
        """First-stage score of each photo (higher first): pooled (n, C) numpy or torch (e.g. float16)."""
        if type(pooled).__module__.startswith("torch"):
            import torch

            with torch.inference_mode():
                return (pooled @ torch.as_tensor(vector, dtype=pooled.dtype)).float().numpy()
        return np.asarray(pooled, dtype=np.float32) @ np.asarray(vector, dtype=np.float32)

    @classmethod
    def load(cls, path: str | Path, *, vocab_size: int | None = None, feature_dim: int | None = None,
             model_name: str | None = None) -> QueryProjection | None:
        """The projection in `path`, or None when it is missing, unreadable or made for another model (read with
        numpy: no torch)."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                words = f.get_tensor("words").astype(np.float32)
                basis = f.get_tensor("basis").astype(np.float32)
        except Exception:  # noqa: BLE001 - missing or damaged: no first stage, find still works
            return None
        if words.ndim != 2 or basis.ndim != 2 or words.shape[1] != basis.shape[0]:
            return None
        if vocab_size is not None and words.shape[0] != vocab_size:
            return None
        if feature_dim is not None and basis.shape[1] != feature_dim:
            return None
        if model_name is not None and meta.get("model_name") and meta["model_name"] != model_name:
            return None
        return cls(words, basis, meta.get("model_name", ""))


def _special_ids(vocab) -> tuple[int, ...]:
    return tuple(vocab.stoi[t] for t in ("<pad>", "<start>", "<end>", "<unk>") if t in vocab.stoi)


def save_projection(path: str | Path, projection: QueryProjection, metadata: dict[str, str] | None = None) -> None:
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({"words": torch.from_numpy(np.ascontiguousarray(projection.words)).half(),
                   "basis": torch.from_numpy(np.ascontiguousarray(projection.basis)).half()}, str(tmp),
                  metadata={"model_name": projection.model_name, **(metadata or {})})


_LOADED: dict = {}


def projection_for(captioner) -> QueryProjection | None:
    """The first-stage projection fitted for this captioner's model (found in the folder it was loaded from, else
    beside the default model), or None. `captioner`: a `captioner.pipeline.Captioner` or a torch-free
    `captioner.runtime.lean.LeanCaptioner` (its folder, vocabulary and `decoder.safetensors` header)."""
    model = getattr(captioner, "model", None)
    key = (id(model if model is not None else captioner), captioner.name)
    if key not in _LOADED:
        if model is not None:
            from captioner.model.folder import default_model_dir

            dim, vocab = model.decoder.init_h.weight.shape[1], model.vocab
            folder = getattr(model, "folder", None) or default_model_dir()
        else:
            from captioner.runtime.external_weights import SafetensorsFile

            folder, vocab = Path(captioner.folder), captioner.vocab
            dim = SafetensorsFile(folder / "decoder.safetensors").header["init_h.weight"]["shape"][1]
        _LOADED[key] = QueryProjection.load(Path(folder) / FILE_NAME, vocab_size=len(vocab), feature_dim=dim,
                                            model_name=captioner.name)
    return _LOADED[key]
