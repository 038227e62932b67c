"""`captioner caption`: caption files and folders; print, JSON Lines, or a resumable output file."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from captioner.cli.common import add_model_arg
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.decoding.config import DecodingConfig


def cmd_caption(args) -> int:
    import torch

    from captioner.inputs.sources import expand_inputs
    from captioner.pipeline import Captioner
    from captioner.results_file import already_done

    if args.threads:
        torch.set_num_threads(args.threads)
    captioner = Captioner.load(args.model, device=args.device)
    decoding = config_from_args(DecodingConfig, args, base=captioner.decoding)
    paths = expand_inputs(args.paths)
    out_path = Path(args.out) if args.out else None
    if out_path:
        done = already_done(out_path)
        skipped = len([p for p in paths if p in done])
        paths = [p for p in paths if p not in done]
        if skipped:
            print(f"skipping {skipped} image(s) already captioned in {out_path}", file=sys.stderr)
    if not paths:
        print("nothing to caption" if out_path else "error: no image files given", file=sys.stderr)
        return 0 if out_path else 2
    failed = 0
    sink = _open_sink(out_path) if out_path else None
    bar = None
    if out_path or len(paths) > 1 and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="captioning", file=sys.stderr, disable=len(paths) < 2)
    try:
        for result in captioner.caption_many(paths, decoding, batch_size=args.batch_size):
            failed += result.error is not None
            if sink:
                sink(result)
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
        if sink:
            sink.close()
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be captioned", file=sys.stderr)
    return 1 if failed else 0


class _Sink:
    def __init__(self, path: Path):
        new = not path.exists() or path.stat().st_size == 0
        self.path, self.csv = path, path.suffix.lower() == ".csv"
        self.f = open(path, "a", newline="", encoding="utf-8")
        if self.csv:
            self.w = csv.writer(self.f)
            if new:
                self.w.writerow(["image", "caption", "score", "normalized_score", "candidates", "error"])

    def __call__(self, r) -> None:
        if self.csv:
            best = r.candidates[0] if r.candidates else None
            self.w.writerow([r.image, best.caption if best else "", f"{best.score:.6f}" if best else "",
                             f"{best.normalized_score:.6f}" if best else "",
                             json.dumps([c.caption for c in r.candidates]), r.error or ""])
        else:
            self.f.write(json.dumps(r.to_dict()) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _open_sink(path: Path) -> _Sink:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _Sink(path)



def register(sub) -> None:
    c = sub.add_parser("caption", help="caption image files or folders",
                       description="Caption images. Folders are searched recursively for image files. "
                                   "Prints the best caption per image; --json prints one JSON object per image; "
                                   "--out writes JSON Lines (.jsonl) or CSV (.csv) and skips images already in it.")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    add_dataclass_args(c, DecodingConfig, model_default=True)
    c.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    c.add_argument("--json", action="store_true", help="JSON Lines on stdout: image, candidates, error")
    c.add_argument("--out", metavar="FILE", help="write results to FILE (.jsonl or .csv); re-running resumes")
    c.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    c.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    add_model_arg(c)
    c.set_defaults(func=cmd_caption)

