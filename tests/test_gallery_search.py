"""Gallery search that means what it says (issue 12): operators, phrases, irregular forms, ranking,
highlights, where it matched, tags (issue 13), filters and sorting."""

from __future__ import annotations

import sqlite3

import pytest

from captioner.storage import Gallery, GalleryError, schema
from captioner.storage.fts_query import parse_search, word_forms
from test_gallery import candidates_for, make_image


@pytest.fixture
def g(tmp_path):
    gallery = Gallery(tmp_path / "gallery")
    yield gallery
    gallery.close()


_seed = iter(range(10_000, 20_000))


def put(g: Gallery, caption: str, *others: str, name: str = "", tags=None, model: str = "m1",
        confidence=None) -> int:
    seed = next(_seed)
    return g.save(make_image(seed), name or f"img{seed}.png", caption, candidates_for(caption, *others), 3,
                  model, tags=tags, confidence=confidence)


def ids(page) -> list[int]:
    return [item["id"] for item in page.items]


# ------------------------------------------------------------------ the search language
def test_and_finds_the_item_with_both(g):
    both = put(g, "a dog swims in a lake")
    put(g, "a dog on the grass")
    put(g, "a boat on a lake")
    for query in ("dog AND lake", "dog and lake", "dog lake", "lake & dog"):
        page = g.search(query)
        assert ids(page) == [both] and page.match_all, query


def test_explicit_and_does_not_fall_back_to_any_word(g):
    put(g, "a dog on the grass")
    put(g, "a boat on a lake")
    page = g.search("dog AND lake")
    assert page.total == 0 and ids(page) == []
    plain = g.search("dog lake")  # plain words: items with any of them, said by match_all
    assert plain.total == 2 and not plain.match_all


def test_not_leaves_items_out(g):
    lake = put(g, "a dog swims in a lake")
    grass = put(g, "a dog on the grass")
    tagged = put(g, "a dog on a jetty", tags=[{"label": "lake", "score": 0.9}])
    for query in ("dog NOT lake", "dog -lake", "dog AND NOT lake"):
        assert ids(g.search(query)) == [grass], query  # the lake item and the one tagged lake are out
    assert set(ids(g.search("dog"))) == {lake, grass, tagged}


def test_or_and_grouping(g):
    dog = put(g, "a dog on the grass")
    cat = put(g, "a cat on the grass")
    put(g, "a cat on a sofa")
    put(g, "a bird in the sky")
    assert set(ids(g.search("dog OR bird"))) == {dog, g.search("bird").items[0]["id"]}
    assert set(ids(g.search("(dog OR cat) grass"))) == {dog, cat}
    assert set(ids(g.search("dog | cat AND grass"))) == {dog, cat}  # AND binds tighter than OR


def test_quoted_phrase_keeps_its_order(g):
    ball = put(g, "a boy throws a red ball")
    put(g, "a red car next to a ball")
    assert ids(g.search('"red ball"')) == [ball]
    assert len(g.search("red ball").items) == 2
    assert ids(g.search('"children playing"')) == [] and ids(g.search('"child playing"')) == []
    kids = put(g, "two children playing football")
    assert ids(g.search('"child playing"')) == [kids]  # irregular forms inside phrases too


def test_lowercase_or_and_not_are_words(g):
    put(g, "a dog or a wolf")
    page = g.search("dog or wolf")
    assert page.total == 1 and page.match_all  # "or" was looked for as a word, and found


@pytest.mark.parametrize("caption, query", [
    ("two children play in the sand", "child"), ("a child on a swing", "children"),
    ("three men on a bench", "man"), ("a man on a bench", "men"),
    ("two women walking", "woman"), ("a woman walking", "women"),
    ("people on a street", "person"), ("a person on a street", "people"),
    ("bare feet in the sand", "foot"), ("a mouse on a desk", "mice"), ("mice in a cage", "mouse"),
    ("a dog is running on grass", "run"), ("a dog runs on grass", "running"), ("a dog ran on grass", "run"),
    ("a girl sitting on a wall", "sit"), ("a girl sat on a wall", "sitting"),
    ("two firemen at work", "fireman"), ("a policewoman on a horse", "policewomen"),
    ("dogs", "dog"), ("a dog", "dogs"),
])
def test_irregular_plurals_and_inflections_match(g, caption, query):
    item = put(g, caption)
    put(g, "an unrelated picture of a boat")
    assert ids(g.search(query)) == [item], query


def test_word_forms_table():
    assert set(word_forms("child")) == {"child", "children"}
    assert set(word_forms("people")) >= {"person", "people"}
    assert "human" in word_forms("human") and "humen" not in word_forms("human")
    assert word_forms("dog") == ("dog",)


@pytest.mark.parametrize("query", ["%", "*", "AND", "OR", "NOT", "AND OR", "-", '""', "?!.,;", "%%%", "( )", "_"])
def test_no_searchable_word_says_so(g, query):
    put(g, "a dog")
    with pytest.raises(GalleryError, match="has no searchable word"):
        g.search(query)


@pytest.mark.parametrize("query", ["NOT dog", "-dog", "dog OR NOT cat"])
def test_only_not_says_so(g, query):
    put(g, "a dog")
    with pytest.raises(GalleryError, match="NOT without a word to look for"):
        g.search(query)


def test_blank_search_is_browse(g):
    put(g, "a dog")
    assert g.search("   ") == g.browse()


def test_operators_from_fts5_are_not_passed_through(g):
    item = put(g, "near the caption column")
    for query in ("NEAR(caption column)", "caption:column", "{caption}: near", "^near", "column*"):
        assert ids(g.search(query)) == [item], query


def test_parse_search_expressions():
    assert parse_search("dog AND lake").fts == '("dog" AND "lake")'
    assert parse_search("dog NOT lake").fts == '("dog") NOT ("lake")'
    assert parse_search("child").fts == '("child" OR "children")'
    assert parse_search('"red ball"').fts == '"red ball"'
    q = parse_search("dog lake")
    assert q.plain and q.any_fts == '"dog" OR "lake"'
    assert not parse_search("dog AND lake").plain and not parse_search('"a b"').plain
    assert parse_search("") is None and parse_search(None) is None


# ------------------------------------------------------------------ ranking, highlight, matched_in
def test_saved_caption_outranks_a_candidate_only_match(g):
    # long caption with "dog" once, and a short candidate full of "dog": bm25 alone ranks the candidate first
    saved = put(g, "an old brown and white dog resting in the shade of a large tree beside a quiet country "
                   "road on a warm afternoon with hills far away behind the fields and a fence")
    candidate_only = put(g, "a cat on a sofa", "dog dog dog dog dog dog dog dog")
    with sqlite3.connect(g.db_path) as conn:
        by_bm25 = [r[0] for r in conn.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH 'dog' "
                                              f"ORDER BY {schema.BM25_WEIGHTS.replace('bm25(', 'bm25(items_fts, ')}")]
    assert by_bm25 == [candidate_only, saved], "the test needs a case that bm25 alone gets wrong"
    page = g.search("dog")
    assert ids(page) == [saved, candidate_only]
    assert [i["matched_in"] for i in page.items] == ["caption", "candidates"]


def test_caption_first_then_tags_name_candidates(g):
    by_candidate = put(g, "a sofa", "a zebra on a sofa")
    by_name = put(g, "a field", name="zebra_trip.jpg")
    by_tag = put(g, "a striped horse", tags=[{"label": "zebra", "score": 0.8}])
    by_caption = put(g, "a long caption about a zebra grazing on the dry grass of a wide plain at dusk")
    page = g.search("zebra")
    assert ids(page) == [by_caption, by_tag, by_name, by_candidate]
    assert [i["matched_in"] for i in page.items] == ["caption", "tags", "name", "candidates"]
    spread = put(g, "a dog on a jetty", tags=[{"label": "lake", "score": 0.9}])
    both = put(g, "a dog swims in a lake")
    page = g.search("dog lake")
    assert ids(page) == [both, spread]  # the caption alone matches, then words spread over caption and tags
    assert [i["matched_in"] for i in page.items] == ["caption", "tags"]


def test_highlight_marks_the_matching_words_and_escapes_the_rest(g):
    put(g, 'a <b>dog</b> & "friends" running')
    item = g.search("dogs run").items[0]
    assert item["highlight"] == 'a &lt;b&gt;<mark>dog</mark>&lt;/b&gt; &amp; "friends" <mark>running</mark>'
    put(g, "two children on a slide")
    assert g.search("child").items[0]["highlight"] == "two <mark>children</mark> on a slide"
    put(g, "a cat on a chair", "a kitten on a chair")
    kitten = g.search("kitten").items[0]
    assert kitten["highlight"] == "a cat on a chair" and kitten["matched_in"] == "candidates"
    assert "<mark>" not in g.search("dog NOT lake").items[0]["highlight"].split("</mark>")[-1]


def test_highlight_leaves_not_words_unmarked(g):
    put(g, "a dog and a cat")
    item = g.search("dog NOT lake").items[0]
    assert item["highlight"] == "a <mark>dog</mark> and a cat"
    assert g.search('"a cat"').items[0]["highlight"] == "a dog and <mark>a cat</mark>"  # a phrase: one mark


# ------------------------------------------------------------------ tags (issue 13)
class TagLike:
    def __init__(self, label, score):
        self.label, self.score = label, score


def test_tags_are_stored_and_searched(g):
    pizza = put(g, "a plate of food on a table", tags=[{"label": "pizza", "score": 0.71},
                                                       {"label": "plate", "score": 0.2}])
    put(g, "a dog on a table")
    page = g.search("pizza")
    assert ids(page) == [pizza] and page.items[0]["matched_in"] == "tags"
    assert page.items[0]["tags"] == [{"label": "pizza", "score": 0.71}, {"label": "plate", "score": 0.2}]
    obj = put(g, "a striped animal", tags=[TagLike("zebra", 0.9), TagLike("zebra", 0.5)])
    assert g.get(obj)["tags"] == [{"label": "zebra", "score": 0.9}]  # one per label, the best score
    assert ids(g.search("pizza AND table")) == [pizza]


@pytest.mark.parametrize("bad", ["pizza", [{"score": 1}], [{"label": ""}], [{"label": "x", "score": "high"}],
                                 [{"label": "x", "score": float("nan")}], [3]])
def test_bad_tags_are_refused(g, bad):
    with pytest.raises(GalleryError, match="the gallery was not changed"):
        put(g, "a dog", tags=bad)
    assert g.count() == 0


def test_video_segment_tags_are_searched(g):
    video = g.save_video(b"\x00\x00\x00\x18ftypisom" + b"v" * 100, "clip.mp4", [
        {"start": 0, "end": 2, "caption": "a man in a kitchen"},
        {"start": 2, "end": 5, "caption": "a plate of food", "tags": [{"label": "pizza", "score": 0.6}]},
    ])
    page = g.search("pizza")
    assert ids(page) == [video]
    assert [s["idx"] for s in page.items[0]["matched_segments"]] == [1]
    assert g.get(video)["tags"] == [{"label": "pizza", "score": 0.6}]
    assert g.get(video)["segments"][1]["tags"] == [{"label": "pizza", "score": 0.6}]
    men = g.search("men")  # irregular forms reach segments too
    assert ids(men) == [video] and [s["idx"] for s in men.items[0]["matched_segments"]] == [0]


# ------------------------------------------------------------------ filters and sorting in search
def test_search_filters_and_sorts(g):
    a = put(g, "a dog in the park", model="m1", confidence=0.2)
    b = put(g, "a dog on the beach", model="m2", confidence=0.9)
    c = put(g, "a dog asleep", model="m2")
    assert ids(g.search("dog", model="m2", sort="confidence")) == [b, c]  # no confidence: last
    assert ids(g.search("dog", sort="confidence", descending=False)) == [a, b, c]
    assert ids(g.search("dog", min_confidence=0.5)) == [b]
    assert ids(g.search("dog", kind="video")) == []
    assert set(ids(g.search("dog", kind="photo"))) == {a, b, c}
    assert ids(g.search("dog", sort="caption", descending=False)) == [c, a, b]  # asleep, in, on
    assert g.search("dog", model="m3").total == 0
    with pytest.raises(GalleryError, match="Unknown sort"):
        g.search("dog", sort="colour")
    with pytest.raises(GalleryError, match="Unknown kind"):
        g.search("dog", kind="gif")


def test_trashed_items_are_not_found(g):
    item = put(g, "a dog in the trash")
    g.delete(item)
    assert g.search("dog").total == 0
    g.restore(item)
    assert ids(g.search("dog")) == [item]


def test_search_pages_and_totals(g):
    made = [put(g, f"a dog number {i}") for i in range(5)]
    put(g, "a cat")
    pages = [g.search("dog", page, 2) for page in (1, 2, 3, 4)]
    assert [p.total for p in pages] == [5] * 4 and [p.pages for p in pages] == [3] * 4
    assert sorted(i for p in pages for i in ids(p)) == made and ids(pages[3]) == []
    assert g.search("dog", 9, 2, sort="saved_at").total == 5
    assert g.search("zebra", 3).total == 0


# ------------------------------------------------------------------ what the user saved (the studio's default)
def test_saved_only_search_ignores_unpicked_candidates(g):
    walk = put(g, "two dogs walking on a road", "two dogs walking on the grass")  # an unpicked one says grass
    fruit = put(g, "a bowl of fruit on a table", "a dog is eating fruit")
    sofa = put(g, "an animal on a sofa", tags=[{"label": "dog", "score": 0.6}])
    named = put(g, "a field", name="dog_walk.jpg")
    # everything, as the library always searched
    assert sorted(ids(g.search("dog"))) == sorted([walk, fruit, sofa, named])
    # what the user saved: the fruit bowl's unpicked candidate is not searched, NOT looks where the search looks
    saved = g.search("dog", candidates=False)
    assert sorted(ids(saved)) == sorted([walk, sofa, named])
    assert {i["id"]: i["matched_in"] for i in saved.items} == {walk: "caption", sofa: "tags", named: "name"}
    assert walk not in ids(g.search("dogs NOT grass"))  # the library's default: the candidates too
    assert sorted(ids(g.search("dogs NOT grass", candidates=False))) == sorted([walk, sofa, named])
    # asked for: the candidates too ("candidates:" in the text, or the flag)
    wide = g.search("candidates: dog", candidates=False)
    assert fruit in ids(wide) and {i["id"]: i["matched_in"] for i in wide.items}[fruit] == "candidates"
    assert walk not in ids(g.search("candidates: dogs NOT grass", candidates=False))
    assert parse_search("Candidates:  dog").candidates and not parse_search("dog").candidates
