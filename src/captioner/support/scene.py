"""Evidence *against* people, animals and outdoor settings in an everyday object scene, from the ImageNet classifier.

The word-presence head (`captioner.support.head`) learnt on Flickr8k, where most photos show people or dogs; on a
kitchen, a plate of food or a parked bus it still rates a person likely. The ImageNet classifier was trained on
photos of such things: when most of its probability lies on everyday objects (food, kitchenware and appliances,
furniture and home things, screens, parked vehicles: `EVERYDAY_CLASSES`), the photo is an object scene. That
*object mass* `m` lowers the head's presence of the concepts such a scene rarely shows (`AGAINST`: people and what
they wear or play with, dogs, outdoor settings): `p' = p * (1 - m) ** strength`.

`m` is read from the tagger's word probabilities (the runtime's only ImageNet output), as the sum over a set of
words whose classes are all everyday classes and no two of which share a class (`cover_words`), so it is the mass
of those classes exactly. The words and the strength are stored in the support head's metadata (`about["against"]`,
written by `scripts/fit_support_head.py`, the strength chosen on Flickr8k val); a head without it is unchanged.
Works on numpy arrays and torch tensors alike (no torch import here).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

#: ImageNet-1k class indices of everyday objects that photos show on their own, without a person or an animal:
#: food and drink, kitchenware and appliances, furniture and home things, screens and office things, parked
#: vehicles. Left out on purpose: clothing, sports gear, instruments, bicycles and motorbikes, toys, tools held in
#: a hand (things Flickr8k photos show with a person).
EVERYDAY_CLASSES: tuple[int, ...] = tuple(sorted({
    # food and drink (plate .. eggnog, but not hay 958)
    *range(923, 958), *range(959, 970),
    # kitchenware and appliances
    438, 440, 441, 469, 473, 499, 503, 504, 505, 512, 521, 533, 534, 544, 550, 567, 572, 618, 647, 651, 653,
    659, 700, 725, 729, 737, 760, 766, 773, 809, 813, 827, 828, 849, 859, 868, 891, 897, 898, 899, 901, 907,
    909, 910,
    # furniture and home things
    409, 435, 453, 492, 493, 495, 526, 530, 532, 548, 553, 556, 559, 564, 598, 619, 648, 721, 750, 753, 765,
    794, 804, 811, 831, 846, 851, 857, 861, 883, 892, 894, 896, 904, 905, 999, 545, 882,
    # screens and office things
    508, 527, 620, 664, 673, 681, 713, 742, 761, 782, 810, 878,
    # vehicles seen parked or passing (cars, vans, trucks, buses, trains, airliners)
    404, 407, 436, 466, 468, 475, 479, 511, 547, 555, 565, 569, 581, 609, 627, 654, 656, 661, 675, 705, 717,
    734, 757, 779, 817, 820, 829, 864, 867, 874, 895, 908,
}))

#: the head's concepts an object scene speaks against: people and what they wear or play with, dogs, and the
#: outdoor settings of Flickr8k's photos
AGAINST: tuple[str, ...] = ("person", "top", "trousers", "dress", "suit", "costume", "hat", "glasses", "dog", "ball",
                            "toy", "skateboard", "snow", "beach", "grass", "water", "mountain", "park", "playground",
                            "rock")


def cover_words(class_words: Sequence[Sequence[str]], classes: Sequence[int] = EVERYDAY_CLASSES) -> list[str]:
    """Tagger words whose classes (`class_words[i]`: the words of class i) all lie in `classes`, no two sharing a
    class, covering as many of `classes` as possible (greedily, the words covering most first; ties by name):
    the sum of their word probabilities is the probability mass of the classes they cover."""
    wanted = set(classes)
    of_word: dict[str, set[int]] = {}
    for i, words in enumerate(class_words):
        for w in words:
            of_word.setdefault(w, set()).add(i)
    fits = sorted((w for w, cs in of_word.items() if cs <= wanted), key=lambda w: (-len(of_word[w]), w))
    taken: set[int] = set()
    out = []
    for w in fits:
        if not of_word[w] & taken:
            out.append(w)
            taken |= of_word[w]
    return sorted(out)


@functools.cache
def everyday_words() -> frozenset[str]:
    """`cover_words` of the ImageNet class table (`captioner.tags.classes`) for `EVERYDAY_CLASSES`."""
    from captioner.tags.classes import class_words

    return frozenset(cover_words(class_words()))


def tag_object_mass(tags) -> float:
    """The object mass a photo's tags (`Tag`s: label, score) show: the summed score of its everyday-object tags
    (`everyday_words`; only tags above the tag threshold count, so a lower bound of the mass)."""
    words = everyday_words()
    return float(min(sum(t.score for t in tags if t.label in words), 1.0))


class SceneAgainst:
    """The object-scene factor of a head's `about["against"]` ({"words", "concepts", "strength"}) for one tagger's
    labels and the head's concepts; `active` is False when the head has none (or none of its words are tags)."""

    def __init__(self, spec: dict | None, tagger_labels: Sequence[str] | None, names: Sequence[str]):
        spec = spec or {}
        index = {w: j for j, w in enumerate(tagger_labels or [])}
        self.word_ids = [index[w] for w in spec.get("words", []) if w in index]
        self.concept_ids = [k for k, c in enumerate(names) if c in set(spec.get("concepts", []))]
        self.strength = float(spec.get("strength", 0.0))
        self.active = bool(self.word_ids and self.concept_ids and self.strength > 0)

    def mass(self, word_probs):
        """(B,) object mass from (B, W) word probabilities (numpy or torch), clipped to [0, 1]."""
        m = word_probs[:, self.word_ids].sum(1)
        return m.clip(0.0, 1.0)

    def apply(self, head_probs, word_probs):
        """The head's (B, K) presence with the concepts spoken against lowered by `(1 - m) ** strength`
        (a new array; unchanged when inactive or without word probabilities)."""
        if not self.active or word_probs is None:
            return head_probs
        factor = (1.0 - self.mass(word_probs)) ** self.strength
        out = head_probs.copy() if hasattr(head_probs, "copy") else head_probs.clone()
        out[:, self.concept_ids] = head_probs[:, self.concept_ids] * factor[:, None]
        return out
