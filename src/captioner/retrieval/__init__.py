"""Find photos by meaning: the captioner's likelihood of a description (fused with full text), more
like this (pooled features), bulk import of folders with their features.

    from captioner.retrieval import find, similar, import_folders, prompt_likelihood
    find(gallery, captioner, "a dog catching a frisbee", top=10)   # -> Matches (a list of Match)
    similar(gallery, item_id, top=10)                                # -> list of Match (cosine)
    import_folders(gallery, captioner, ["~/Pictures"], progress=callback)   # -> ImportReport
    prompt_likelihood(captioner, "photo.jpg", "a dog on a beach")     # -> float (nats per word)
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "find": "captioner.retrieval.search", "Match": "captioner.retrieval.search",
    "Matches": "captioner.retrieval.search", "FindConfig": "captioner.retrieval.config",
    "similar": "captioner.retrieval.more_like_this", "import_folders": "captioner.retrieval.importer",
    "ImportReport": "captioner.retrieval.importer", "prompt_likelihood": "captioner.retrieval.prompt",
    "photo_index": "captioner.retrieval.index", "query_tokens": "captioner.retrieval.likelihood",
    "Scorer": "captioner.retrieval.likelihood",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'captioner.retrieval' has no attribute {name!r}")
