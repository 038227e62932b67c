"""Copy a trained model folder into the package's weights folder (src/captioner/weights) as the shipped default, in half precision, with the
decoding defaults chosen on the validation split.

    python scripts/ship_model.py --src runs/lite2-224/best --beam 5 --length-penalty 0 --name flickr8k-lite2-sat
    python scripts/ship_model.py --src runs/scst2/best --checkpoint runs/scst2/ck-120.pt --beam 3 ...

`--checkpoint` takes the decoder weights from a `captioner train`/`captioner scst` checkpoint
(loaded with weights_only=True) instead of the model folder.
"""
from __future__ import annotations

import argparse

from captioner.model.folder import DEFAULT_MODEL_DIR, CaptionModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--src", required=True)
    p.add_argument("--dst", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--beam", type=int, required=True, help="default beam size (chosen on validation)")
    p.add_argument("--length-penalty", type=float, required=True, help="chosen on validation")
    p.add_argument("--no-repeat-ngram", type=int, default=0, help="chosen on validation (0: off)")
    p.add_argument("--name", required=True)
    p.add_argument("--full", action="store_true", help="keep float32 weights")
    p.add_argument("--checkpoint", help="decoder weights from this checkpoint.pt")
    a = p.parse_args()
    model = CaptionModel.load(a.src, with_encoder=False)
    if a.checkpoint:
        import torch

        model.decoder.load_state_dict(torch.load(a.checkpoint, map_location="cpu", weights_only=True)["decoder"])
    model.cfg.name = a.name
    model.decoding = model.decoding.replace(beam_size=a.beam, length_penalty=a.length_penalty,
                                            no_repeat_ngram=a.no_repeat_ngram)
    model.save(a.dst, half=not a.full)
    print(f"shipped {a.src} -> {a.dst}")


if __name__ == "__main__":
    main()
