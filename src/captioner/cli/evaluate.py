"""`captioner evaluate`: score a model on a split."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from captioner.cli.common import DATA_ENV, DATA_HELP, add_command, add_json_arg, add_model_arg
from captioner.cli.dataclass_args import add_dataclass_args
from captioner.decoding.config import DecodingConfig


def cmd_evaluate(args) -> int:
    from captioner.evaluation.run import evaluate_model

    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(DecodingConfig)}
    result = evaluate_model(args.model, args.data, args.split, image_dir=args.image_dir, cache_dir=args.cache,
                            limit=args.limit, use_java=False if args.no_java else None, **changes)
    scores = result["scores"]
    if args.predictions:
        Path(args.predictions).write_text(json.dumps(result["predictions"], indent=1))
    if args.json:
        print(json.dumps(scores))
    else:
        for k in ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"):
            v = scores.get(k)
            print(f"{k:8s} {'n/a' if v is None else f'{v:.2f}'}")
        print(f"images   {scores['n_images']} ({scores['split']}), beam {scores['beam_size']}, "
              f"{scores['seconds_per_image'] * 1000:.1f} ms/image ({scores['timed']})")
        for m in scores["missing"]:
            print(f"not computed: {m}")
    return 0


def register(sub) -> None:
    e = add_command(sub, "evaluate", cmd_evaluate, "score a model on a split (BLEU, METEOR, ROUGE-L, CIDEr)",
                    """Decode a split with beam search and compute BLEU-1..4, METEOR, ROUGE-L and CIDEr with the
                    COCO caption tools against all references. METEOR needs Java.""")
    add_model_arg(e)
    e.add_argument("--data", default=None, help=DATA_HELP + f" (default: ${DATA_ENV})")
    e.add_argument("--image-dir", help="image folder for a Karpathy JSON")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    add_dataclass_args(e, DecodingConfig, model_default=True)
    e.add_argument("--cache", metavar="DIR", help="use cached encoder features (faster; times the decoder only)")
    e.add_argument("--limit", type=int, default=0, help="only the first N images")
    e.add_argument("--predictions", metavar="FILE", help="also write the captions as JSON")
    e.add_argument("--no-java", action="store_true", help="skip the Java tools (no METEOR)")
    add_json_arg(e, "print the metrics as one JSON object")

