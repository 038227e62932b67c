"""`captioner caption`: caption files and folders; print, JSON Lines, or a resumable output file."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from captioner.cli.common import add_model_arg
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.decoding.config import DecodingConfig
from captioner.errors import ConfigError
from captioner.results_file import ResultsFile, check_output_path, read_done

MAX_BATCH = 1024


def check_counts(args) -> None:
    """Numbers that would misbehave are refused before anything is loaded or written."""
    if args.batch_size < 1 or args.batch_size > MAX_BATCH:
        raise ConfigError(f"--batch-size must be between 1 and {MAX_BATCH}, not {args.batch_size}")
    max_threads = 4 * (os.cpu_count() or 1)
    if not 0 <= args.threads <= max_threads:
        raise ConfigError(f"--threads must be between 1 and {max_threads} (4 x this machine's cores), or 0 for "
                          f"the default, not {args.threads}")
    DecodingConfig().replace(**{f: getattr(args, f) for f in DecodingConfig.__dataclass_fields__})  # ranges


def cmd_caption(args) -> int:
    import torch

    from captioner.device import resolve_device
    from captioner.inputs.sources import expand_inputs
    from captioner.pipeline import Captioner

    check_counts(args)
    device = resolve_device(args.device)
    if args.out:
        check_output_path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    captioner = Captioner.load(args.model, device=device)
    decoding = config_from_args(DecodingConfig, args, base=captioner.decoding)
    paths = expand_inputs(args.paths)
    if not paths:
        print("error: no image files given (the folders hold none)", file=sys.stderr)
        return 2
    to_file = args.out not in (None, "-")
    sink = ResultsFile(args.out) if args.out else None
    try:
        if to_file:
            if sink.dropped_partial:
                print(f"{args.out}: dropped an incomplete last line left by an interrupted run", file=sys.stderr)
            done = read_done(Path(args.out))
            skipped = len([p for p in paths if p in done])
            paths = [p for p in paths if p not in done]
            if skipped:
                print(f"skipping {skipped} image(s) already captioned in {args.out}", file=sys.stderr)
            if not paths:
                print("nothing to caption", file=sys.stderr)
                return 0
        return _caption_paths(captioner, paths, decoding, args, sink)
    finally:
        if sink:
            sink.close()


def _caption_paths(captioner, paths: list[str], decoding, args, sink) -> int:
    failed = 0
    bar = None
    if args.out not in (None, "-") or len(paths) > 1 and not args.json and not sink:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="captioning", file=sys.stderr, disable=len(paths) < 2)
    try:
        for n, result in enumerate(captioner.caption_many(paths, decoding, batch_size=args.batch_size), 1):
            failed += result.error is not None
            if sink:
                sink.write(result)
                if n % args.batch_size == 0:
                    sink.commit()
                if result.error and not sink.stdout:
                    print(f"error: {result.error}", file=sys.stderr)
            elif args.json:
                print(json.dumps(result.to_dict()), flush=True)
            elif result.error:
                print(f"error: {result.error}", file=sys.stderr)
            else:
                print(f"{result.image}\t{result.caption}" if len(paths) > 1 else result.caption, flush=True)
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be captioned", file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    c = sub.add_parser("caption", help="caption image files or folders",
                       description="Caption images. Folders are searched recursively for image files. "
                                   "Prints the best caption per image; --json prints one JSON object per image; "
                                   "--out writes JSON Lines (.jsonl) or CSV (.csv) and skips images already in it.")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    add_dataclass_args(c, DecodingConfig, model_default=True)
    c.add_argument("--batch-size", type=int, default=8, help=f"images per batch, 1 to {MAX_BATCH} (default 8)")
    c.add_argument("--json", action="store_true", help="JSON Lines on stdout: image, candidates, error")
    c.add_argument("--out", metavar="FILE", help="write results to FILE (.jsonl or .csv; - for standard output); "
                                                 "re-running resumes")
    c.add_argument("--threads", type=int, default=0, help="torch threads, up to 4 x the cores (default 0: all cores)")
    c.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    add_model_arg(c)
    c.set_defaults(func=cmd_caption)

