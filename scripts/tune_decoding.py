"""Choose decoding settings on the VALIDATION split (never test): beam size x length penalty.

    python scripts/tune_decoding.py --model runs/lite2-224/best --cache runs/features/lite2-224-g7
    python scripts/tune_decoding.py --model runs/scst1/best --checkpoint runs/scst1/checkpoint.pt ...

The length penalty only orders the finished candidates of a beam search, so each beam size and
n-gram setting is decoded once and re-ranked for every penalty (the same order `beam_search` gives).

`--checkpoint` takes the decoder weights from a training checkpoint (`captioner train` or
`captioner scst`) instead of the model folder, to compare the states a run went through.
"""
from __future__ import annotations

import argparse
import json

import torch

from captioner.cli.common import DATA_HELP, default_data
from captioner.data import load_dataset
from captioner.data.features import FeatureCache
from captioner.decoding.search import decode, rank_key
from captioner.evaluation.metrics import score_captions
from captioner.model.folder import CaptionModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--data", default=default_data(), required=default_data() is None,
                   help=DATA_HELP + " (default: $CAPTIONER_DATA)")
    p.add_argument("--cache", required=True)
    p.add_argument("--beams", default="3,5")
    p.add_argument("--penalties", default="0,0.5,1.0")
    p.add_argument("--ngrams", default="0", help="no_repeat_ngram values to try (0: off)")
    p.add_argument("--checkpoint", help="decoder weights from this checkpoint.pt (loaded with weights_only=True)")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    ds = load_dataset(a.data)
    ids = ds.split("val")
    model = CaptionModel.load(a.model, with_encoder=False)
    if a.checkpoint:
        model.decoder.load_state_dict(torch.load(a.checkpoint, map_location="cpu", weights_only=True)["decoder"])
    model.eval()
    feats = FeatureCache(a.cache).load(ids).float()
    refs = {i: ds.captions[i] for i in ids}
    rows = []
    for k in [int(b) for b in a.beams.split(",")]:
        for ng in [int(x) for x in a.ngrams.split(",")]:
            cands = {}
            with torch.inference_mode():
                for s in range(0, len(ids), 100):
                    out = decode(model.decoder, feats[s : s + 100], model.vocab,
                                 model.decoding.replace(beam_size=k, length_penalty=0.0, no_repeat_ngram=ng))
                    cands.update(zip(ids[s : s + 100], out))
            for lp in [float(x) for x in a.penalties.split(",")]:
                preds = {i: max(c, key=lambda cd: rank_key(cd.score, len(cd.ids), lp)).caption for i, c in cands.items()}
                sc = score_captions(preds, refs, metrics=("bleu4", "cider"), use_java=False)
                rows.append({"checkpoint": a.checkpoint or a.model, "beam": k, "length_penalty": lp,
                             "no_repeat_ngram": ng, "val_bleu4": round(sc["bleu4"], 2), "val_cider": round(sc["cider"], 2),
                             "mean_words": round(sum(len(v.split()) for v in preds.values()) / len(preds), 2)})
                print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
