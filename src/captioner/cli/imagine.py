"""`captioner imagine`: images from a caption with the user's own text-to-image model, captioned back."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from captioner.cli.common import add_command, add_device_arg, add_json_arg, add_model_arg
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.imagine.config import T2I_MODEL_ENV, ImagineConfig


def cmd_imagine(args) -> int:
    from captioner.imagine.t2i import ImagineError, missing_packages, model_folder, require_packages

    config = config_from_args(ImagineConfig, args)  # checked when made
    if missing_packages():
        require_packages()  # raises ImagineError naming the pip command (exit 2)
    model_folder(args.t2i_model)  # a wrong folder or --out is reported before anything heavy loads
    if Path(args.out).expanduser().exists() and not Path(args.out).expanduser().is_dir():
        raise ImagineError(f"--out {args.out}: is a file, not a folder")

    from captioner.device import resolve_device
    from captioner.imagine import TextToImage, imagine, save_imagined
    from captioner.pipeline import Captioner

    device = resolve_device(args.device)
    t2i = TextToImage(args.t2i_model, device=str(device))
    captioner = Captioner.load(args.model, device=device)

    def progress(done: int, total: int) -> None:
        print(f"generated {done} of {total}", file=sys.stderr, flush=True)

    items = imagine(args.prompt, t2i, captioner, config, progress=progress)
    save_imagined(items, args.out)
    for item in items:
        if args.json:
            print(json.dumps(item.to_dict(), ensure_ascii=False), flush=True)
            continue
        m = item.match
        print(f"{item.path}\t{m.caption or '(no caption)'}")
        if m.prompt_score is None:
            print("  the captioner knows no word of the prompt, so it cannot score it")
        else:
            print(f"  prompt log-likelihood {m.prompt_score:.2f} per word (p={m.word_probability:.3f}); "
                  f"its own caption {m.caption_score:.2f} (prompt {m.relative:.2f}x as likely per word)")
        if m.unknown_words:
            print(f"  words the captioner does not know (not scored): {', '.join(m.unknown_words)}")
    return 0


def register(sub) -> None:
    p = add_command(sub, "imagine", cmd_imagine, "generate images from a caption with your own text-to-image model",
                    """Generate images for a description with a text-to-image model folder you already have
                    (diffusers format: Stable Diffusion, SD-Turbo ...; nothing is downloaded), then caption each
                    image back and show how likely the captioner finds the description for it. Needs the optional
                    extra: pip install -e ".[imagine]".""")
    p.add_argument("prompt", metavar="PROMPT", help='what to draw, e.g. "a dog running on the beach"')
    p.add_argument("--t2i-model", metavar="DIR",
                   help=f"the text-to-image model folder (holds model_index.json; default: ${T2I_MODEL_ENV})")
    add_dataclass_args(p, ImagineConfig)
    p.add_argument("--out", metavar="DIR", default="imagined",
                   help="folder for the PNG files (default: imagined); existing files are never overwritten")
    add_json_arg(p, "one JSON object per image: file, caption, likelihoods")
    add_device_arg(p, "cpu, cuda or auto (default cpu)")
    add_model_arg(p)
