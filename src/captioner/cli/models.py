"""`captioner models`: the model a command uses when none is named, and the models learned from a
gallery's edits (`captioner learn`, the studio's "Learn from my edits"): where each is, from how many
edits, when, and its held-out check. Any of them is used with `--model DIR`; leaving `--model` out goes
back to the shipped model."""
from __future__ import annotations

import json
from pathlib import Path

from captioner.cli.common import add_command, add_gallery_arg, add_json_arg, one_line


def models_listing(gallery: Path) -> dict:
    """{"default": {"path", "name"}, "gallery": folder, "learned": [list_models rows]} (no torch loaded)."""
    from captioner.learning.model_folder import list_models
    from captioner.model.folder import default_model_dir

    folder = default_model_dir()
    try:
        name = json.loads((folder / "config.json").read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return {"default": {"path": str(folder), "name": name}, "gallery": str(gallery),
            "learned": list_models(gallery)}


def print_models(gallery: Path, as_json: bool = False) -> int:
    from captioner.learning.model_folder import MODELS_DIR, describe

    listing = models_listing(gallery)
    if as_json:
        print(json.dumps(listing, indent=2))
        return 0
    default = listing["default"]
    print(f"default (used without --model): {default['name'] or '?'}\t{one_line(default['path'])}")
    learned = listing["learned"]
    if not learned:
        print(f"no learned models in {one_line(str(gallery / MODELS_DIR))} (captioner learn --gallery "
              f"{one_line(str(gallery))} makes one from your edited captions)")
        return 0
    print(f"learned from the edits of {one_line(str(gallery))} ({len(learned)}), oldest first; use one with "
          "--model PATH:")
    for m in learned:
        print(f"{one_line(m['path'])}\t{one_line(m['name'] or '?')}\t{describe(m)}")
    return 0


def cmd_models(args) -> int:
    from captioner.storage.gallery import default_gallery_dir

    gallery = Path(args.gallery).expanduser() if args.gallery else default_gallery_dir()
    return print_models(gallery, args.json)


def register(sub) -> None:
    p = add_command(sub, "models", cmd_models, "list the models learned from your edits (for --model)",
                    """List the default model and the models learned from a gallery's edited captions
                    (GALLERY/models/): where each one is, from how many edits, when, and its held-out check
                    (CIDEr-D against your own captions before and after). Use one with --model PATH in caption,
                    evaluate, find, studio, gallery add, imagine and learn; without --model the shipped model is
                    used.""")
    add_gallery_arg(p, "gallery folder (default: your data directory, where the studio saves)")
    add_json_arg(p, "print the list as JSON")
