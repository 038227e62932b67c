"""Scoring a model on a dataset split: decode every image, then compute the caption metrics."""
from __future__ import annotations

import time

from captioner.decoding.config import DecodingConfig
from captioner.errors import CaptionerError


def evaluate_model(model_dir, data, split, decoding: DecodingConfig | None = None, *, image_dir=None, cache_dir=None,
                   limit=0, batch_size=50, use_java=None, **changes) -> dict:
    """Decode a split with `decoding` (default: the model's) and the given field changes
    (`beam_size=3`; None keeps a field), score it, and return the metrics plus timing."""
    import torch

    from captioner.data import load_dataset
    from captioner.data.features import open_feature_cache
    from captioner.decoding.search import decode
    from captioner.evaluation.metrics import score_captions
    from captioner.model.folder import default_model_dir, load_model
    from captioner.pipeline import Captioner, folder_extras

    ds = load_dataset(data, image_dir)
    ids = ds.split(split)[: limit or None]
    model = load_model(model_dir)
    cfg = model.cfg
    decoding = (model.decoding if decoding is None else decoding.over(model.decoding)).replace(**changes)
    cache = None
    if cache_dir:
        cache = open_feature_cache(cache_dir, cfg.backbone, cfg.input_size, cfg.grid,
                                    "it does not match this model's backbone/input size/grid",
                                    encoder=model.encoder.fingerprint() if cfg.fine_tune_blocks else None)
    preds, decode_s = {}, 0.0
    extras = folder_extras(model_dir or default_model_dir())
    captioner = None if cache else Captioner(model, new_words=extras["new_words"],
                                             tag_reliability=extras["tag_reliability"])
    grounding = _cached_grounding(model, decoding, extras) if cache else None
    for s in range(0, len(ids), batch_size):
        chunk = ids[s : s + batch_size]
        if cache:
            feats = cache.load(chunk).float()
            t = time.perf_counter()
            with torch.inference_mode():
                if grounding is None:
                    out = decode(model.decoder, feats, model.vocab, decoding)
                else:  # grounded decoding (`--tag-bonus`): the same search the pipeline runs, on the cache
                    from captioner.tags.grounding import decode_with_tags

                    tagger, new_words, reliability, support = grounding
                    out = decode_with_tags(tagger, model.decoder, feats, model.vocab, decoding, new_words,
                                           reliability=reliability, support=support)
            decode_s += time.perf_counter() - t
            for i, cands in zip(chunk, out):
                preds[i] = cands[0].caption
        else:
            t = time.perf_counter()
            for i, r in zip(chunk, captioner.caption_many([ds.image_path(i) for i in chunk], decoding,
                                                                batch_size=batch_size)):
                if r.error:
                    raise CaptionerError(r.error)
                preds[i] = r.caption
            decode_s += time.perf_counter() - t
    scores = score_captions(preds, {i: ds.captions[i] for i in ids}, use_java=use_java)
    scores.update(beam_size=decoding.beam_size, decoding=decoding.to_dict(), split=split, seconds_per_image=decode_s / max(len(ids), 1),
                  timed="decoder only (cached features)" if cache else "end to end from image files")
    return {"scores": scores, "predictions": preds}


def _cached_grounding(model, decoding, extras: dict):
    """(tagger, new words, tag reliability, support evidence) for grounded decoding or the support penalty
    on cached features, or None when both are off or the backbone has no classifier; `extras`: the model
    folder's (`folder_extras`)."""
    head = extras.get("support_head") if decoding.support_penalty > 0 else None
    if decoding.tag_bonus <= 0 and head is None:
        return None
    from captioner.tags.tagger import ObjectTagger

    tagger = ObjectTagger.for_backbone(model.cfg.backbone)
    if tagger is None:
        return None
    support = None
    if head is not None:
        from captioner.support.penalty import SupportEvidence

        support = SupportEvidence(head, tagger.labels)
    return tagger, extras["new_words"], extras["tag_reliability"], support
