"""Learning from the user's corrections: fine-tune the captioner on the captions a user edited (in a
gallery, or listed in a JSON Lines file), from stored encoder grids, with forgetting held back by
distillation and an L2 pull, new words added to the vocabulary, held-out before/after figures, and
the result written as a normal model folder. `captioner learn` is its command (cli/learn.py)."""
from captioner.learning.config import LearnConfig
from captioner.learning.edits import Edit, edits_from_gallery, edits_from_jsonl, open_gallery
from captioner.learning.model_folder import list_models
from captioner.learning.run import LearnRefused, LearnReport, learn

__all__ = ["Edit", "LearnConfig", "LearnRefused", "LearnReport", "edits_from_gallery", "edits_from_jsonl",
           "learn", "list_models", "open_gallery"]
