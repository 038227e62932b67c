"""Object tags: the backbone's own ImageNet-1k classifier, run on the pooled features the encoder
already computes, its 1,000 classes mapped to plain searchable words (`tabby, tabby cat` -> `cat`).

`Tag` is cheap to import; `ObjectTagger` (torch) and `TagConfig` load on first use.
"""
from __future__ import annotations

from captioner.tags.tag import Tag

__all__ = ["ObjectTagger", "Tag", "TagConfig", "class_words"]


def __getattr__(name):
    if name in ("ObjectTagger", "TagConfig"):
        from captioner.tags import tagger

        return getattr(tagger, name)
    if name == "class_words":
        from captioner.tags.classes import class_words

        return class_words
    raise AttributeError(name)
