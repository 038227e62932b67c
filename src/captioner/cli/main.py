"""The `captioner` command: one parser, one module per command group; errors a user can cause end as one line and exit code 2."""
from __future__ import annotations

import argparse
import sys

from captioner.cli import caption, evaluate, find, gallery, imagine, learn, models, studio, train
from captioner.cli.common import DATA_ENV, default_data
from captioner.errors import CaptionerError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="captioner", description="Offline image captioning (Show, Attend and Tell).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (caption, train, evaluate, studio, gallery, imagine, find, learn, models):
        module.register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "data", "unset") is None:
        args.data = default_data()
        if args.data is None:
            print(f"error: pass --data (a Flickr8k folder or a Karpathy JSON) or set ${DATA_ENV}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except CaptionerError as exc:  # an error a user can cause (GalleryError is one too)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; try a smaller --batch-size or --beam-size", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


