"""The 1,000 ImageNet-1k classes and the plain words each maps to (`imagenet_words.json`, built by
`scripts/build_tag_map.py`): `tabby, tabby cat` -> `cat`; `golden retriever` -> `golden retriever`, `dog`."""
from __future__ import annotations

import functools
import json
from importlib import resources

N_CLASSES = 1000


@functools.cache
def class_table() -> list[dict]:
    """One entry per class index: {"index", "wnid", "name" (the synset's names), "words" (plain words)}."""
    text = resources.files("captioner.tags").joinpath("imagenet_words.json").read_text(encoding="utf-8")
    table = json.loads(text)["classes"]
    if len(table) != N_CLASSES or [c["index"] for c in table] != list(range(N_CLASSES)):
        raise ValueError("imagenet_words.json must list the 1000 ImageNet classes in order")
    return table


def class_words() -> list[list[str]]:
    """The plain words of each class index (never empty)."""
    return [list(c["words"]) for c in class_table()]
