"""Choosing the captioning model among the one a program started with and the models learned from a
gallery's edits (the studio's model picker): the choices are names the gallery's `models/` folder lists,
and a name is mapped back to its folder here (`model_folder.model_choice`), so a caller that got the name
from elsewhere (a browser) can never name a path. Going back to the started model is always possible:
it stays loaded, and nothing is ever written over its folder.
"""
from __future__ import annotations

import threading
from pathlib import Path

from captioner.learning.model_folder import describe, list_models, model_choice

#: the choice that means the model the program started with (never a learned folder's name: those are
#: listed from GALLERY/models/, and this one is matched first)
STARTED = "(started)"


class ModelPicker:
    """The started `Captioner` and the gallery's learned models. `use(name)` returns the captioner for a
    listed name (loaded once; one learned model is kept loaded at a time, beside the started one).
    `load(folder)`: how a learned model is loaded (None: `Captioner.from_pretrained`; the studio passes its
    runtime's, `captioner.runtime.choice.load_captioner`)."""

    def __init__(self, gallery_folder: str | Path, started, load=None):
        self.gallery_folder = Path(gallery_folder)
        self.started = started
        self.load = load
        self.current = STARTED
        self._loaded: tuple[str, object] | None = None
        self._lock = threading.Lock()

    def choices(self) -> list[tuple[str, str]]:
        """(label, name) pairs: the started model first, then the learned ones, oldest first."""
        out = [(f"{self.started.name} (the model the studio started with)", STARTED)]
        for m in list_models(self.gallery_folder):
            out.append((f"{m['id']}: {describe(m)}", m["id"]))
        return out

    def use(self, name: str):
        """The captioner for the listed model `name` (STARTED: the started one), now the current one;
        CaptionerError for a name the gallery does not list."""
        if self.load is None:
            from captioner.pipeline import Captioner

            self.load = Captioner.from_pretrained
        name = str(name or "")
        with self._lock:
            if name == STARTED:
                self.current = STARTED
                return self.started
            folder = model_choice(self.gallery_folder, name)  # raises for anything not listed
            if self._loaded is None or self._loaded[0] != name:
                self._loaded = None  # the previous learned model goes before the next one loads
                self._loaded = (name, self.load(folder))
            self.current = name
            return self._loaded[1]
