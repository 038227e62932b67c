"""`captioner caption SOURCE... --ray [ADDRESS] --out DIR`: the flags (no Ray import at parse time)
and the command, which hands the work to `captioner.scale.job.run_caption_job`. `captioner.cli.caption`
checks the counts they share (--batch-size, --threads, the decoding settings) before it hands over."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.errors import ConfigError
from captioner.scale.config import RayJobConfig

#: what `--ray` takes as a cluster address; anything else given right after it is a photo source
_ADDRESS = re.compile(r"^(local|auto|ray://\S+|\[?[\w.:-]+\]?:\d{1,5})$")
#: error lines printed; the rest are in the output's error rows
MAX_ERROR_LINES = 50


def add_ray_args(parser) -> None:
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run as a Ray Data job writing Parquet files into the --out folder (resumable): "
                             "without ADDRESS on a local Ray instance, or on the cluster at ADDRESS (auto, "
                             "HOST:PORT, ray://HOST:10001). Needs pip install \"captioner[scale]\"")
    add_dataclass_args(parser, RayJobConfig, prefix="ray-")


def split_address(ray_value: str, paths: list[str]) -> tuple[str | None, list[str]]:
    """(cluster address or None for a local instance, sources): `--ray photos/` reads as a local run
    over photos/ (argparse gives `--ray` the word after it)."""
    if ray_value in ("local", ""):
        return None, paths
    if _ADDRESS.match(ray_value) and not Path(ray_value).exists():
        return ray_value, paths
    return None, [ray_value, *paths]


def cmd_caption_ray(args) -> int:
    from captioner.decoding.config import DecodingConfig
    from captioner.scale.job import require_ray, run_caption_job

    address, sources = split_address(args.ray, list(args.paths))
    cfg = config_from_args(RayJobConfig, args, prefix="ray-")
    if not args.out or args.out == "-":
        raise ConfigError("--ray writes its results into a folder: give --out DIR (Parquet files, or JSON Lines "
                          "with --ray-format jsonl)")
    if args.json:
        raise ConfigError("--ray writes files, not standard output: drop --json (--ray-format jsonl writes JSON "
                          "Lines into the --out folder)")
    if getattr(args, "write_metadata", None):
        raise ConfigError("--write-metadata writes into the photos on this machine; run it without --ray")
    require_ray()  # one clear line before any work when Ray is missing
    changes = {f: getattr(args, f) for f in DecodingConfig.__dataclass_fields__}
    bar, errors_shown = None, [0]

    def on_start(summary) -> None:
        nonlocal bar
        from tqdm import tqdm

        if summary.skipped:
            print(f"skipping {summary.skipped} photo(s) already captioned in {args.out}", file=sys.stderr)
        lay = summary.layout
        print(f"ray: {lay.workers} captioning worker(s), {lay.worker_cpus:g} CPU(s) and {lay.worker_gpus:g} GPU(s) "
              f"each, on {'the cluster at ' + address if address else 'a local Ray instance'}", file=sys.stderr)
        bar = tqdm(total=summary.listed - summary.skipped, unit="img", desc="captioning", file=sys.stderr)

    def progress(done: int, total: int, failed: int, errors: list[str]) -> None:
        for line in errors:
            if errors_shown[0] < MAX_ERROR_LINES:
                (bar.write if bar else print)(f"error: {line}", file=sys.stderr)  # a line of its own
            errors_shown[0] += 1
        if bar:
            bar.update(done - bar.n)

    try:
        summary = run_caption_job(sources, args.out, model_dir=args.model, cfg=cfg, address=address,
                                  batch_size=args.batch_size, progress=progress, on_start=on_start, **changes)
    finally:
        if bar:
            bar.close()
    if summary.listed == 0:
        print("error: no image files given (the folders hold none)", file=sys.stderr)
        return 2
    if summary.skipped == summary.listed:
        print(f"nothing to caption: all {summary.listed} photo(s) are in {args.out}", file=sys.stderr)
        return 0
    if errors_shown[0] > MAX_ERROR_LINES:
        print(f"... and {errors_shown[0] - MAX_ERROR_LINES} more error(s): see the rows with an error in {args.out}",
              file=sys.stderr)
    print(f"captioned {summary.captioned} photo(s) into {args.out} ({summary.files} file(s), "
          f"{summary.seconds:.1f} s)", file=sys.stderr)
    if summary.failed:
        print(f"{summary.failed} of {summary.listed - summary.skipped} photo(s) could not be captioned "
              "(error rows)", file=sys.stderr)
    return 1 if summary.failed else 0
