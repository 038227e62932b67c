"""Words the vocabulary lacks, added at decode time, for the torch-free path: `captioner.tags.new_words` imports
no torch, so its `NewWords`, `extend_vocab` and `ExtendedStepDecoder` (on numpy arrays here) serve both
paths. Importing this module imports neither torch nor onnx."""
from __future__ import annotations

from pathlib import Path

from captioner.tags.new_words import NEW_WORDS_FILE, ExtendedStepDecoder, NewWords, extend_vocab

__all__ = ["NEW_WORDS_FILE", "ExtendedStepDecoder", "NewWords", "extend_vocab", "load_new_words"]


def load_new_words(folder: str | Path) -> NewWords | None:
    """The folder's `new_words.json` (`NewWords.load`), or None (no file, or one that cannot be read)."""
    return NewWords.load(folder)
