"""Find by description, more like this, prompt likelihood (captioner.retrieval, `captioner find`).

A small real gallery: ten Flickr8k photos (plus a re-encoded near-duplicate of one) imported with the
shipped model. The slow test measures the issue's target on Flickr8k's test photos."""
from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioner.model.vocab import Vocab, tokenize
from captioner.retrieval.likelihood import Scorer, query_tokens

PHOTOS = {  # Flickr8k training photos and what the shipped model says of them
    "boat": "3356369156_074750c6cc.jpg",        # a boat in the water
    "race_car": "3006217970_90b42e6b27.jpg",    # a race car is driving on a track
    "skier": "2926786902_815a99a154.jpg",       # a skier is jumping in the air
    "snow_dogs": "2513260012_03d33305cf.jpg",   # two dogs playing in the snow
    "beach_dog": "488416045_1c6d903fe0.jpg",    # a brown dog is running on the beach
    "girl": "2380765956_6313d8cae3.jpg",        # a girl in a green jacket is running through a field
    "building": "2501968935_02f2cd8079.jpg",    # a man in a green shirt is standing in front of a building
    "mountain": "1655781989_b15ab4cbff.jpg",    # a person on a snowy mountain
    "bench": "2685788323_ceab14534a.jpg",       # a man and a woman are sitting on a bench
    "greyhound": "2469498117_b4543e1460.jpg",   # a greyhound ... is running on a track
}


# ------------------------------------------------------------------ the scorer itself (tiny model, fast)
def test_scorer_is_the_decoders_teacher_forcing(tiny_model_dir):
    from captioner.model.folder import load_model

    model = load_model(tiny_model_dir).eval()
    torch.manual_seed(3)
    grids = torch.randn(5, 4, model.decoder.init_h.weight.shape[1])
    query = query_tokens(model.vocab, "a dog runs on the grass")
    scorer = Scorer(model.decoder)
    got = scorer.token_logprobs(scorer.photos(grids), query)
    ids = torch.tensor([query.ids] * 5)
    with torch.inference_mode():
        logp, _ = model.decoder(grids, ids, torch.tensor([len(query.ids)] * 5))
    want = logp.gather(2, ids[:, 1:, None]).squeeze(2)
    assert torch.allclose(got, want, atol=1e-5)
    mean = scorer.text_likelihood(scorer.photos(grids), query)
    assert np.allclose(mean, want.mean(dim=1).numpy(), atol=1e-5)


def test_pruning_scores_only_the_best_photos_after_the_first_words(tiny_model_dir):
    from captioner.model.folder import load_model

    model = load_model(tiny_model_dir).eval()
    torch.manual_seed(4)
    scorer = Scorer(model.decoder)
    photos = scorer.photos(torch.randn(40, 4, model.decoder.init_h.weight.shape[1]))
    query = query_tokens(model.vocab, "a man sits on the grass with a red ball")
    full = scorer.text_likelihood(photos, query)
    pruned = scorer.text_likelihood(photos, query, prune=(3, 8))
    kept = np.isfinite(pruned)
    partial = scorer.token_logprobs(photos, query)[:, :3].mean(dim=1)
    assert set(np.flatnonzero(kept)) == set(torch.topk(partial, 8).indices.tolist())
    assert np.allclose(pruned[kept], full[kept], atol=1e-5)
    assert np.all(pruned[~kept] == -np.inf)


def test_unknown_words_are_fed_as_unk_but_not_scored():
    vocab = Vocab(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "on", "the"])
    q = query_tokens(vocab, "A dog on the Zorblax, zorblax!")
    assert q.unknown == ("zorblax",)
    assert q.ids == (1, 4, 5, 6, 7, 3, 3, 2)
    assert q.scored == (True, True, True, True, False, False, True)
    assert q.usable
    assert not query_tokens(vocab, "zorblax").usable


def test_first_stage_shortlist_takes_the_best_hits_then_the_best_cheap_scores():
    from captioner.retrieval.index import PhotoIndex
    from captioner.retrieval.search import shortlist

    rng = np.random.default_rng(0)
    pooled = rng.standard_normal((50, 6)).astype(np.float32)
    index = PhotoIndex(np.arange(100, 150), pooled / np.linalg.norm(pooled, axis=1, keepdims=True),
                       np.full(50, np.nan, np.float32))
    cheap = np.arange(50, dtype=np.float32)  # row 49 best, then 48, ...
    hits = [103, 110, 149, 120]  # item ids, best first
    rows = shortlist(index, hits, 6, cheap, 2)  # the best 2 hits, then the best cheap scores
    assert rows.tolist() == [3, 10, 46, 47, 48, 49]
    # a hit that is also among the cheap best is taken once, and the next cheap best fills its place
    assert shortlist(index, hits, 6, cheap, 3).tolist() == [3, 10, 46, 47, 48, 49]
    assert shortlist(index, hits, 6, cheap, 0).tolist() == [44, 45, 46, 47, 48, 49]
    assert shortlist(index, hits, 60, cheap, 0).tolist() == list(range(50))  # small gallery: every photo


def test_query_projection_round_trip_and_refusals(tmp_path):
    from captioner.retrieval.first_stage import QueryProjection, bag_of_words, save_projection

    vocab = Vocab(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "on", "the", "beach"])
    rng = np.random.default_rng(1)
    proj = QueryProjection(rng.standard_normal((len(vocab), 3)).astype(np.float32),
                           rng.standard_normal((3, 5)).astype(np.float32), "some-model")
    path = tmp_path / "query_projection.safetensors"
    save_projection(path, proj)
    back = QueryProjection.load(path, vocab_size=len(vocab), feature_dim=5, model_name="some-model")
    assert back is not None and back.model_name == "some-model"
    x = bag_of_words(vocab.encode("a dog on the zorblax dog"), len(vocab))
    assert np.count_nonzero(x) == 4 and np.isclose(np.linalg.norm(x), 1.0)  # known words once, specials skipped
    want = x @ proj.words @ proj.basis
    assert np.allclose(back.query_vector(vocab, "a dog on the zorblax dog"), want, atol=0.05)  # float16 file
    assert QueryProjection.load(path, vocab_size=len(vocab) + 1) is None  # another vocabulary
    assert QueryProjection.load(path, feature_dim=6) is None             # another encoder
    assert QueryProjection.load(path, model_name="other-model") is None
    assert QueryProjection.load(tmp_path / "missing.safetensors") is None
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    assert QueryProjection.load(tmp_path / "bad.safetensors") is None


# ------------------------------------------------------------------ a small real gallery
@pytest.fixture(scope="module")
def photo_folder(flickr8k_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS.values():
        shutil.copy(flickr8k_dir / "images" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def gallery_dir(photo_folder, shipped_captioner, tmp_path_factory):
    """The ten photos imported (with features), then a near-duplicate of the boat saved without them."""
    from captioner.retrieval import import_folders
    from captioner.storage import Gallery

    folder = tmp_path_factory.mktemp("gallery")
    with Gallery(folder) as g:
        report = import_folders(g, shipped_captioner, [photo_folder])
        assert len(report.added) == len(PHOTOS) and not report.failed
        with Image.open(photo_folder / PHOTOS["boat"]) as img:
            buf = io.BytesIO()
            img.resize((216, 216)).save(buf, format="JPEG", quality=80)
        result = shipped_captioner.caption(buf.getvalue())
        g.save(buf.getvalue(), "boat-copy.jpg", result.caption)  # no features: find back-fills them
    return folder


def item_ids(folder) -> dict[str, int]:
    from captioner.storage import Gallery

    with Gallery(folder) as g:
        by_name = {item["original_name"]: item["id"] for item in g.iter_items()}
    out = {key: by_name[name] for key, name in PHOTOS.items()}
    out["boat_copy"] = by_name["boat-copy.jpg"]
    return out


def test_found_by_a_description_sharing_no_word_with_its_caption(gallery_dir, shipped_captioner):
    from captioner.retrieval import find
    from captioner.retrieval.search import fulltext_hits
    from captioner.storage import Gallery

    ids = item_ids(gallery_dir)
    query = "vehicle speeding around circuit"
    with Gallery(gallery_dir) as g:
        caption = g.get(ids["race_car"])["caption"]
        assert not set(tokenize(query)) & set(tokenize(caption)), caption
        assert ids["race_car"] not in fulltext_hits(g, query, 100)  # full text alone cannot find it
        assert g.ids_without_features(shipped_captioner.name) == [ids["boat_copy"]]
        matches = find(g, shipped_captioner, query, top=3)
        assert g.ids_without_features(shipped_captioner.name) == []  # back-filled on demand
    assert matches[0].item_id == ids["race_car"]
    assert matches[0].likelihood is not None and matches[0].fulltext_rank is None
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert matches.unknown_words == []


def test_first_stage_shortlists_a_big_gallery_by_meaning(gallery_dir, shipped_captioner):
    """With a shortlist smaller than the gallery and no full-text hit, the shipped first stage (words ->
    pooled features) still brings the photo described into the few photos scored."""
    from captioner.retrieval import FindConfig, find
    from captioner.retrieval.first_stage import projection_for
    from captioner.retrieval.index import photo_index
    from captioner.retrieval.search import first_stage_scores
    from captioner.storage import Gallery

    ids = item_ids(gallery_dir)
    cfg = FindConfig(shortlist=3, shortlist_fulltext=0)
    assert projection_for(shipped_captioner) is not None  # shipped beside the weights
    with Gallery(gallery_dir) as g:
        index = photo_index(g, shipped_captioner, priors=False)
        cheap = first_stage_scores(shipped_captioner, index, "two dogs playing in the snow", cfg)
        assert index.ids[int(np.argmax(cheap))] == ids["snow_dogs"]
        matches = find(g, shipped_captioner, "vehicle speeding around circuit", top=3, config=cfg, index=index)
        assert matches.scored == 3
        assert matches[0].item_id == ids["race_car"]
        timings: dict = {}
        off = find(g, shipped_captioner, "vehicle speeding around circuit", top=3, index=index, timings=timings,
                   config=FindConfig(shortlist=3, first_stage=False))
        assert off.scored == 3 and {"fulltext", "shortlist", "read_grids", "score"} <= set(timings)


def test_unknown_words_are_reported_and_left_to_full_text(gallery_dir, shipped_captioner):
    from captioner.retrieval import find
    from captioner.storage import Gallery

    ids = item_ids(gallery_dir)
    with Gallery(gallery_dir) as g:
        matches = find(g, shipped_captioner, "a boat on the zorblax", top=3)
    assert matches.unknown_words == ["zorblax"]
    assert {matches[0].item_id, matches[1].item_id} == {ids["boat"], ids["boat_copy"]}
    assert matches.to_dict()["unknown_words"] == ["zorblax"]


def test_similar_gives_the_item_then_its_near_duplicate(gallery_dir, shipped_captioner):
    from captioner.retrieval import similar
    from captioner.storage import Gallery, GalleryError

    ids = item_ids(gallery_dir)
    with Gallery(gallery_dir) as g:
        matches = similar(g, ids["boat"], top=4, captioner=shipped_captioner)
        assert [m.item_id for m in matches[:2]] == [ids["boat"], ids["boat_copy"]]
        assert matches[0].score == pytest.approx(1.0, abs=2e-3)  # float16 scan
        assert matches[1].score > 0.75 > 0.6 > matches[2].score
        with pytest.raises(GalleryError, match="no item 999"):
            similar(g, 999)


def test_prompt_likelihood_prefers_the_fitting_text(photo_folder, shipped_captioner):
    from captioner.retrieval import prompt_likelihood

    photo = photo_folder / PHOTOS["snow_dogs"]
    fits = prompt_likelihood(shipped_captioner, photo, "two dogs play in the snow")
    other = prompt_likelihood(shipped_captioner, photo, "a man sits on a bench in a city")
    assert fits > other + 1.0
    assert -6 < fits < 0


def run_cli(argv, capsys):
    from captioner.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_find_cli_text_json_and_queries_file(gallery_dir, tmp_path, capsys):
    ids = item_ids(gallery_dir)
    code, out, err = run_cli(["find", "a boat on the zorblax", "--gallery", str(gallery_dir), "--top", "2"], capsys)
    assert code == 0
    assert len(out.splitlines()) == 2 and out.split("\t")[0] in {str(ids["boat"]), str(ids["boat_copy"])}
    assert "zorblax" in err and "full-text" in err

    queries = tmp_path / "queries.txt"
    queries.write_text("vehicle speeding around circuit\n\ntwo dogs play in the snow\n")
    code, out, err = run_cli(["find", "--queries", str(queries), "--gallery", str(gallery_dir), "--top", "3"], capsys)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == ["vehicle speeding around circuit", "two dogs play in the snow"]
    assert lines[0]["matches"][0]["item_id"] == ids["race_car"]
    assert lines[1]["matches"][0]["item_id"] == ids["snow_dogs"]
    first = lines[1]["matches"][0]
    assert first["original_name"] == PHOTOS["snow_dogs"] and isinstance(first["score"], float)
    assert all(len(line["matches"]) == 3 for line in lines)

    code, out, err = run_cli(["find", "--like", str(ids["boat"]), "--gallery", str(gallery_dir), "--json"], capsys)
    assert code == 0
    assert [m["item_id"] for m in json.loads(out)["matches"][:2]] == [ids["boat"], ids["boat_copy"]]


def test_find_cli_usage_errors(gallery_dir, tmp_path, capsys):
    code, _, err = run_cli(["find", "--gallery", str(gallery_dir)], capsys)
    assert code == 2 and "DESCRIPTION" in err
    code, _, err = run_cli(["find", "a dog", "--gallery", str(tmp_path / "none")], capsys)
    assert code == 2 and "no gallery" in err
    code, _, err = run_cli(["find", "--queries", str(tmp_path / "missing.txt"), "--gallery", str(gallery_dir)],
                           capsys)
    assert code == 2 and "missing.txt" in err
    code, _, err = run_cli(["find", "a dog", "--gallery", str(gallery_dir), "--top", "0"], capsys)
    assert code == 2 and "top" in err


# ------------------------------------------------------------------ the target (Flickr8k test photos)
N_QUERIES = 30  # a fixed random subset of the 1,000 test queries, against all 1,000 test photos


@pytest.mark.slow
def test_likelihood_beats_full_text_on_flickr8k_test(flickr8k_dir, shipped_captioner, tmp_path):
    """recall@5 of find-by-description (the shipped FindConfig: first-stage shortlist, likelihood, prior,
    full-text fusion) >= 1.5x the gallery's full-text search over the model's own captions.
    scripts/eval_retrieval.py measures all 1,000 queries."""
    from captioner.data.flickr8k import read_flickr8k
    from captioner.retrieval.config import FindConfig
    from captioner.retrieval.evaluation import build_photo_set, fulltext_rankings, rank_of, recall_at
    from captioner.retrieval.first_stage import projection_for
    from captioner.retrieval.index import PhotoIndex, pool
    from captioner.retrieval.prior import photo_priors
    from captioner.retrieval.search import fulltext_bonus, shortlist

    ds = read_flickr8k(flickr8k_dir)
    test_ids = ds.split("test")
    rng = random.Random(0)  # the same queries as scripts/eval_retrieval.py
    queries = [ds.captions[i][rng.randrange(len(ds.captions[i]))] for i in test_ids]
    order = list(range(len(test_ids)))
    random.Random(1).shuffle(order)  # scripts/eval_retrieval.py scores the queries in this order too
    chosen = order[:N_QUERIES]
    photo_set = build_photo_set(shipped_captioner, [ds.image_path(i) for i in test_ids], batch_size=32)
    fts = fulltext_rankings(photo_set, [queries[q] for q in chosen], top=100, folder=tmp_path)
    cfg = FindConfig()
    scorer = Scorer(shipped_captioner.model.decoder)
    photos = scorer.photos(photo_set.grids)
    prior = photo_priors(scorer, photos, shipped_captioner.model.vocab, cfg.generic_captions) if cfg.prior_weight else \
        np.zeros(len(photos), np.float32)
    index = PhotoIndex(np.arange(len(photos)), pool(photo_set.grids), prior)
    projection = projection_for(shipped_captioner) if cfg.first_stage else None
    ours, theirs = [], []
    for q, hits in zip(chosen, fts):  # as `find` does it: shortlist, likelihood, prior, full-text bonus
        cheap = None if projection is None else \
            projection.scores(projection.query_vector(shipped_captioner.model.vocab, queries[q]), index.pooled_half)
        rows = shortlist(index, hits, cfg.shortlist, cheap, cfg.shortlist_fulltext if cheap is not None else None)
        tokens = query_tokens(shipped_captioner.model.vocab, queries[q])
        prune = (cfg.prune_after, cfg.prune_keep) if cfg.prune_keep else None
        score = np.full(len(photos), -np.inf, np.float32)
        score[rows] = scorer.text_likelihood(photos[torch.from_numpy(rows)], tokens, prune=prune) \
            - cfg.prior_weight * prior[rows]
        for r, photo in enumerate(hits):
            score[photo] += cfg.fulltext_weight * fulltext_bonus(r)
        ours.append(rank_of(score, q) if q in set(rows.tolist()) else None)
        theirs.append(hits.index(q) if q in hits else None)
    r5, f5 = recall_at(ours, 5), recall_at(theirs, 5)
    print(f"recall@5 {r5:.3f} vs full text {f5:.3f}; recall@10 {recall_at(ours, 10):.3f} vs {recall_at(theirs, 10):.3f}")
    assert r5 >= 1.5 * f5 and r5 > 0
