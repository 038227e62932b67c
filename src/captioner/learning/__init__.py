"""Learning from the user's corrections: fine-tune the captioner on the captions a user edited (in a
gallery, or listed in a JSON Lines file), from stored encoder grids, with forgetting held back by
distillation and an L2 pull, new words added to the vocabulary, held-out before/after figures, and
the result written as a normal model folder. `captioner learn` is its command (cli/learn.py)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use: `captioner.learning.config` alone (what the CLI's parser needs) loads no torch.
_EXPORTS = {"LearnConfig": "config", "Edit": "edits", "edits_from_gallery": "edits", "edits_from_jsonl": "edits",
            "open_gallery": "edits", "list_models": "model_folder", "LearnRefused": "run", "LearnReport": "run",
            "learn": "run", "LearnJob": "background", "count_edits": "background",
            "model_choice": "model_folder"}

__all__ = ["Edit", "LearnConfig", "LearnJob", "LearnRefused", "LearnReport", "count_edits", "edits_from_gallery",
           "edits_from_jsonl", "learn", "list_models", "model_choice", "open_gallery"]

if TYPE_CHECKING:
    from captioner.learning.background import LearnJob, count_edits
    from captioner.learning.config import LearnConfig
    from captioner.learning.edits import Edit, edits_from_gallery, edits_from_jsonl, open_gallery
    from captioner.learning.model_folder import list_models, model_choice
    from captioner.learning.run import LearnRefused, LearnReport, learn


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'captioner.learning' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"captioner.learning.{module}"), name)
    globals()[name] = value
    return value
