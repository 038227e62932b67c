"""The shipped default model in weights/ loads and captions Flickr8k test photos about what they show."""
from __future__ import annotations

from captioner.data import load_dataset
from captioner.evaluation.metrics import score_captions
from captioner.model.folder import DEFAULT_MODEL_DIR


def test_weights_folder_is_complete_and_small():
    files = {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {"config.json", "vocab.json", "decoder.safetensors", "README.md"} <= files
    assert sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()) < 50 * 2**20


def test_shipped_model_captions_flickr8k_test_images(flickr8k_dir, shipped_captioner):
    ds = load_dataset(flickr8k_dir)
    ids = ds.split("test")[:40]
    captioner = shipped_captioner  # the default: weights/
    results = list(captioner.caption_many([ds.image_path(i) for i in ids], beam_size=3, batch_size=20))
    assert all(r.error is None for r in results)
    n = captioner.decoding.no_repeat_ngram
    for r in results:
        assert not {"<unk>", "<start>", "<end>", "<pad>"} & set(r.candidates[0].tokens)
        if n:  # the model's decoding setting reaches the pipeline
            for c in r.candidates:
                grams = [tuple(c.ids[i : i + n]) for i in range(len(c.ids) - n + 1)]
                assert len(grams) == len(set(grams)), c.tokens
    scores = score_captions({i: r.caption for i, r in zip(ids, results)}, {i: ds.captions[i] for i in ids},
                            metrics=("bleu1", "bleu4", "cider"), use_java=False)
    assert scores["bleu1"] > 50 and scores["cider"] > 30, scores
