"""`captioner gallery add DIR...`: caption whole folder trees into the gallery, with their features.

Resumable (photos already in the gallery, by content hash, are skipped), a progress bar on stderr,
one line per bad file (the others go on; exit code 1 if any failed)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from captioner.errors import CaptionerError, ConfigError


def _open_or_create(args):
    from captioner.storage import Gallery, GalleryError, default_gallery_dir

    folder = Path(args.gallery).expanduser() if args.gallery else default_gallery_dir()
    if folder.exists() and not folder.is_dir():
        raise CaptionerError(f"'{folder}' is a file, not a gallery folder")
    try:
        return Gallery(folder)
    except GalleryError as exc:
        raise CaptionerError(str(exc)) from exc


def cmd_add(args) -> int:
    from tqdm import tqdm

    from captioner.cli.common import say, show_image_warnings
    from captioner.inputs.images import display_name
    from captioner.pipeline import Captioner
    from captioner.retrieval.importer import import_folders
    from captioner.storage import GalleryError

    missing = [p for p in args.paths if not Path(p).expanduser().exists()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such file or folder")
    if args.batch_size < 1 or args.batch_size > 256:
        raise ConfigError(f"--batch-size must be between 1 and 256, not {args.batch_size}")
    gallery = _open_or_create(args)
    try:
        if gallery.read_only:
            raise CaptionerError(f"The gallery at '{gallery.folder}' is read-only: nothing can be added")
        captioner = Captioner.load(args.model)
        bar = tqdm(total=0, desc="adding photos", unit="photo", file=sys.stderr, disable=args.quiet)

        def progress(done: int, total: int, name: str) -> None:
            bar.total = total
            bar.update(done - bar.n)

        def failure(path: str, reason: str) -> None:
            say(f"skipped {display_name(path)}: {reason}", bar)

        show_image_warnings()
        try:
            report = import_folders(gallery, captioner, args.paths, progress=progress, on_failure=failure,
                                    batch_size=args.batch_size)
        finally:
            bar.close()
    except GalleryError as exc:  # a full disk (DiskFullError) too: one line, exit 2, resumable
        raise CaptionerError(str(exc)) from exc
    finally:
        gallery.close()
    print(f"added {len(report.added)} photo(s) to {gallery.folder}; {len(report.skipped)} already there; "
          f"{len(report.failed)} could not be added")
    return 1 if report.failed else 0


def register(actions, common: argparse.ArgumentParser) -> None:
    """Add `add` to `captioner gallery`'s actions (`common` carries --gallery)."""
    from captioner.cli.common import add_command, add_model_arg

    p = add_command(actions, "add", cmd_add, "caption folders of photos into the gallery (resumable)",
                    """Caption every photo under the given folders (and files) and store each in the gallery with
                    its features; photos already there are skipped, bad files reported one line each.""",
                    parents=[common])
    p.add_argument("paths", nargs="+", metavar="DIR", help="folders (searched recursively) or photo files")
    p.add_argument("--batch-size", type=int, default=8, help="photos captioned together (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arg(p)
