"""`captioner learn`: fine-tune the captioner on the captions the user edited (a gallery's edits, or a
JSON Lines file of {"image", "caption"}), and list a gallery's learned models.

The flags of the learning itself are generated from `LearnConfig` (cli/dataclass_args.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from captioner.cli.common import add_command, add_gallery_arg, add_json_arg, add_model_arg
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.errors import ConfigError
from captioner.learning.config import LearnConfig


def default_out(gallery: Path) -> Path:
    """GALLERY/models/: an unfinished run's folder (so a rerun resumes it), else a new dated one."""
    from captioner.learning.model_folder import new_model_dir

    return new_model_dir(gallery)


def cmd_list(args) -> int:
    from captioner.cli.models import print_models

    if not args.gallery:
        raise ConfigError("--list needs --gallery DIR")
    return print_models(Path(args.gallery).expanduser(), args.json)


def cmd_learn(args) -> int:
    from captioner.learning import edits_from_gallery, edits_from_jsonl, learn, open_gallery
    from captioner.learning.run import feature_model_names
    from captioner.model.folder import default_model_dir, load_model

    if args.list:
        return cmd_list(args)
    if bool(args.gallery) == bool(args.captions):
        raise ConfigError("give exactly one of --gallery DIR and --captions FILE")
    cfg = config_from_args(LearnConfig, args).validate()
    base_dir = Path(args.model) if args.model else default_model_dir()
    anchors = []
    if args.gallery:
        base = load_model(base_dir, with_encoder=False)
        with open_gallery(args.gallery) as gallery:
            edits, anchors = edits_from_gallery(gallery, feature_model_names(base_dir, base))
        out = Path(args.out) if args.out else default_out(Path(args.gallery))
        source = f"gallery {Path(args.gallery).expanduser().resolve()}"
    else:
        if not args.out:
            raise ConfigError("--captions needs --out MODEL_DIR")
        edits, out = edits_from_jsonl(args.captions), Path(args.out)
        source = f"captions file {Path(args.captions).expanduser().resolve()}"
    report = learn(edits, out, cfg, base_dir=base_dir, anchors=anchors, source=source, progress=not args.quiet)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    held = report.held_out
    print(f"learned from {report.trained_on} of {report.edits} edits in {report.seconds:.0f} s "
          f"({report.steps} steps); new words: {', '.join(report.new_words) or 'none'}")
    if held:
        print(f"held-out edits ({held.n}): CIDEr-D against your captions {held.cider_before:.1f} -> "
              f"{held.cider_after:.1f}; captions changed on {100 * held.changed:.0f}% of those photos")
        if report.trained_on == report.edits:
            print(f"the check passed: the written model learned again from all {report.edits} edits")
    else:
        print(f"not measured: fewer than {cfg.min_held_out_edits} edits, none held out")
    conf = report.confidence or {}
    why = conf.get("why", "not refitted")
    print(f"confidence calibration: {why}" if conf.get("refitted") else
          f"confidence calibration: the base model's, kept ({why})")
    print(f"model written to {report.out}; use it with --model {report.out}")
    return 0


def register(sub) -> None:
    p = add_command(sub, "learn", cmd_learn, "learn from the captions you edited (a new model folder)",
                    """Fine-tune the captioner on your edited captions (a gallery's edits, or a JSON Lines file of
                    {"image": path, "caption": text}), from the encoder features the gallery stores. New words are
                    added to the vocabulary; forgetting is held back by distillation to the original model and a
                    pull toward its weights. With enough edits some are held out, and a model worse on them is not
                    written. Progress is checkpointed: run the same command again after a kill or Ctrl-C to
                    continue. The result is a model folder for --model.""")
    add_gallery_arg(p, "learn from this gallery's edited captions")
    p.add_argument("--captions", metavar="FILE", help="learn from a JSON Lines file of {\"image\", \"caption\"}")
    p.add_argument("--out", metavar="MODEL_DIR", help="the new model folder (default with --gallery: "
                                                      "GALLERY/models/learned-DATE)")
    p.add_argument("--list", action="store_true", help="list the models learned into --gallery's models/ folder")
    add_json_arg(p, "print the report (or the list) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arg(p)
    add_dataclass_args(p.add_argument_group("learning"), LearnConfig)
