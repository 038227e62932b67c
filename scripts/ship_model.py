"""Copy a trained model folder into the package's weights folder (src/captioner/weights) as the shipped default, in half precision, with the
decoding defaults chosen on the validation split.

    python scripts/ship_model.py --src runs/lite2-224/best --beam 5 --length-penalty 0 --name flickr8k-lite2-sat
    python scripts/ship_model.py --src runs/scst2/best --checkpoint runs/scst2/ck-120.pt --beam 3 ...

`--checkpoint` takes the decoder weights from a `captioner train`/`captioner scst` checkpoint
(loaded with weights_only=True) instead of the model folder.

The shipped folder carries its ONNX runtime (`encoder.onnx`, `decoder_step.onnx` reading
`decoder.safetensors`, and `checksums.json`: captioner.runtime.folder_runtime), written here too, so
that `captioner caption` neither exports nor hashes anything at start-up. To write only those files
for a folder already shipped (e.g. after an onnx or torch upgrade changed nothing else):

    python scripts/ship_model.py --runtime-only [--dst src/captioner/weights]
"""
from __future__ import annotations

import argparse

from captioner.model.folder import DEFAULT_MODEL_DIR, CaptionModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--src")
    p.add_argument("--dst", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--beam", type=int, help="default beam size (chosen on validation)")
    p.add_argument("--length-penalty", type=float, help="chosen on validation")
    p.add_argument("--no-repeat-ngram", type=int, default=0, help="chosen on validation (0: off)")
    p.add_argument("--name")
    p.add_argument("--full", action="store_true", help="keep float32 weights")
    p.add_argument("--checkpoint", help="decoder weights from this checkpoint.pt")
    p.add_argument("--runtime-only", action="store_true",
                   help="only (re)write --dst's ONNX runtime and checksums.json from its own weights")
    a = p.parse_args()
    if a.runtime_only:
        from captioner.runtime.folder_export import write_runtime

        written = write_runtime(CaptionModel.load(a.dst), a.dst)
        print(f"wrote {', '.join(written)} in {a.dst}")
        return
    missing = [f"--{n.replace('_', '-')}" for n in ("src", "beam", "length_penalty", "name") if getattr(a, n) is None]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)}")
    model = CaptionModel.load(a.src)
    if a.checkpoint:
        import torch

        model.decoder.load_state_dict(torch.load(a.checkpoint, map_location="cpu", weights_only=True)["decoder"])
    model.cfg.name = a.name
    model.decoding = model.decoding.replace(beam_size=a.beam, length_penalty=a.length_penalty,
                                            no_repeat_ngram=a.no_repeat_ngram)
    model.save(a.dst, half=not a.full, runtime=True)
    print(f"shipped {a.src} -> {a.dst}")


if __name__ == "__main__":
    main()
