"""Average the decoder weights of several model folders ("model soup") into a new model folder.

    python scripts/average_weights.py --out runs/soup runs/scst/best runs/scst-greedy/best

All folders must share the config (apart from its name and decoding defaults), the vocabulary and,
when the backbone was fine-tuned, the encoder weights; the first folder's config is kept.
"""
from __future__ import annotations

import argparse

import torch

from captioner.model.folder import CaptionModel


def average(sources: list[str]) -> CaptionModel:
    models = [CaptionModel.load(s, with_encoder=False) for s in sources]
    base = models[0]
    for s, m in zip(sources[1:], models[1:]):
        if m.vocab.itos != base.vocab.itos:
            raise SystemExit(f"{s} has another vocabulary than {sources[0]}")
        if m.cfg.fine_tune_blocks or base.cfg.fine_tune_blocks:
            if m.encoder.fingerprint() != base.encoder.fingerprint():
                raise SystemExit(f"{s} has other encoder weights than {sources[0]}")
    states = [m.decoder.state_dict() for m in models]
    base.decoder.load_state_dict({k: sum(sd[k].float() for sd in states) / len(states) for k in states[0]})
    return base


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("sources", nargs="+", help="model folders")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with torch.no_grad():
        average(a.sources).save(a.out)
    print(f"averaged {len(a.sources)} decoders -> {a.out}")


if __name__ == "__main__":
    main()
