"""`captioner caption`: caption files and folders; print, JSON Lines, or a resumable output file."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from captioner.cli.common import add_model_arg, one_line, say, show_image_warnings
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.decoding.config import DecodingConfig
from captioner.errors import ConfigError
from captioner.results_file import ResultsFile, check_output_path, check_output_suffix, read_done, read_done_videos
from captioner.settings import max_threads

MAX_BATCH = 1024
RUNTIMES = ("onnx", "torch")


def check_counts(args) -> None:
    """Numbers that would misbehave are refused before anything is loaded or written."""
    if args.batch_size < 1 or args.batch_size > MAX_BATCH:
        raise ConfigError(f"--batch-size must be between 1 and {MAX_BATCH}, not {args.batch_size}")
    if not 0 <= args.threads <= max_threads():
        raise ConfigError(f"--threads must be between 1 and {max_threads()} (4 x this machine's cores), or 0 for "
                          f"the default, not {args.threads}")
    DecodingConfig().replace(**{f: getattr(args, f) for f in DecodingConfig.__dataclass_fields__})  # ranges
    if getattr(args, "max_shot", None) is not None:
        from captioner.video.segments import check_max_shot

        check_max_shot(args.max_shot)


def expand_with_videos(paths: list[str]) -> list[str]:
    """`expand_inputs`, with video files found in folders too (a folder of photos gives what it always did)."""
    from captioner.inputs.images import IMAGE_EXTENSIONS
    from captioner.inputs.sources import expand_inputs
    from captioner.video.types import VIDEO_EXTENSIONS

    return expand_inputs(paths, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)


def torch_reason(args, decoding=None) -> str | None:
    """Why this run needs the PyTorch path (None: the torch-free one does it all, photos and videos): --runtime
    torch, a device other than the CPU (`captioner.runtime.choice.torch_reason`), or what
    `captioner.runtime.lean.needs_torch` names in the decoding."""
    from captioner.runtime.choice import torch_reason as runtime_reason

    reason = runtime_reason(args.runtime, args.device)
    if reason is None and decoding is not None:
        from captioner.runtime.lean import needs_torch

        return needs_torch(decoding)
    return reason


def load_captioner(args):
    """The captioner for this run, by the one choice every command makes (`captioner.runtime.choice`):
    `LeanCaptioner` (ONNX Runtime and numpy, no torch) when it can do everything asked and the model folder
    carries its ONNX runtime, else the PyTorch `Captioner`, which gives the same output; then the decoding
    asked for."""
    from captioner.runtime.choice import load_captioner as choose

    captioner = choose(args.model, runtime=args.runtime, device=args.device, threads=args.threads,
                       needs=lambda lean: torch_reason(args, config_from_args(DecodingConfig, args,
                                                                              base=lean.decoding)))
    return captioner, config_from_args(DecodingConfig, args, base=captioner.decoding)


def cmd_caption(args) -> int:
    check_counts(args)
    if getattr(args, "ray", None) is not None:  # a Ray Data job over a cluster (captioner.scale)
        from captioner.cli.caption_ray import cmd_caption_ray

        return cmd_caption_ray(args)
    from captioner.video.subtitles import is_subtitle_path
    from captioner.video.types import is_video_path

    if args.out:
        check_output_path(args.out)
        check_output_suffix(args.out)
    show_image_warnings()
    subtitles = is_subtitle_path(args.out)
    if subtitles and len(args.paths) != 1:
        raise ConfigError(f"--out {args.out}: subtitles hold the captions of one video; give a single video "
                          "(or write JSON Lines: --out captions.jsonl)")
    paths = expand_with_videos(args.paths)
    videos = [p for p in paths if is_video_path(p)]
    captioner, decoding = load_captioner(args)
    if not paths:
        print("error: no image files given (the folders hold none)", file=sys.stderr)
        return 2
    if subtitles:
        if len(paths) != 1 or not videos:
            raise ConfigError(f"--out {args.out}: subtitles hold the captions of one video; {args.paths[0]} is not "
                              "a video file (.mp4, .mov, .mkv, .webm, .avi or an animated .gif)")
        return _caption_videos(captioner, videos, decoding, args, None, several=False)
    if videos and args.out and Path(args.out).suffix.lower() == ".csv":
        raise ConfigError(f"--out {args.out}: video captions are timed segments; write them to .jsonl, .vtt or .srt")
    several = len(paths) > 1
    photos = [p for p in paths if p not in set(videos)]
    sink = ResultsFile(args.out) if args.out else None
    try:
        if args.out not in (None, "-"):
            if sink.dropped_partial:
                print(f"{args.out}: dropped an incomplete last line left by an interrupted run", file=sys.stderr)
            done, done_videos = read_done(Path(args.out)), read_done_videos(Path(args.out))
            skipped = len([p for p in photos if p in done]) + len([v for v in videos if v in done_videos])
            photos = [p for p in photos if p not in done]
            videos = [v for v in videos if v not in done_videos]
            if skipped:
                print(f"skipping {skipped} file(s) already captioned in {args.out}", file=sys.stderr)
            if not photos and not videos:
                print("nothing to caption", file=sys.stderr)
                return 0
        # photos first (exactly as without videos), then each video's segments
        code = _caption_paths(captioner, photos, decoding, args, sink, several=several) if photos else 0
        if videos:
            code = max(code, _caption_videos(captioner, videos, decoding, args, sink, several=several))
        return code
    finally:
        if sink:
            sink.close()


def _out(line: str, bar=None) -> None:
    """A result line on stdout (above the progress bar when there is one)."""
    if bar is not None:
        bar.write(line, file=sys.stdout)
        sys.stdout.flush()
    else:
        print(line, flush=True)


def _caption_paths(captioner, paths: list[str], decoding, args, sink, several: bool | None = None) -> int:
    from captioner.inputs.images import display_name

    failed = unwritten = 0
    several = len(paths) > 1 if several is None else several
    bar = None
    if args.out not in (None, "-") or len(paths) > 1 and not args.json and not sink:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="captioning", file=sys.stderr, disable=len(paths) < 2)
    try:
        for n, result in enumerate(captioner.caption_many(paths, decoding, batch_size=args.batch_size), 1):
            failed += result.error is not None
            if getattr(args, "write_metadata", None) and result.error is None:
                unwritten += not _write_metadata(result, args, bar)
            if sink:
                sink.write(result)
                if n % args.batch_size == 0:
                    sink.commit()
                if result.error and not sink.stdout:
                    say(f"error: {result.error}", bar)
            elif args.json:
                print(json.dumps(result.to_dict()), flush=True)
            elif result.error:
                say(f"error: {result.error}", bar)
            else:
                name = display_name(result.image)
                _out(f"{name}\t{caption_line(result)}" if several else caption_line(result), bar)
                for warning in result.warnings:
                    say(f"warning: {name}: {warning}", bar)
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be captioned", file=sys.stderr)
    if unwritten:
        print(f"{unwritten} caption(s) could not be written into the photos' metadata", file=sys.stderr)
    return 1 if failed or unwritten else 0


def caption_line(result) -> str:
    """The text output for a photo: its caption, then (when the model is calibrated) a tab and its
    confidence, marked LOW when it has a warning (under the model's low-confidence threshold, or a tiny,
    blank, elongated or screenshot-like image; the warnings themselves go to stderr)."""
    caption = one_line(result.caption)  # escaped, so a caption cannot break the line; the tab stays a tab
    if result.confidence is None:
        return caption
    return f"{caption}\t(confidence {result.confidence:.2f}{', LOW' if result.warnings else ''})"


def _write_metadata(result, args, bar=None) -> bool:
    """--write-metadata: the caption into the photo's XMP sidecar or the photo itself; a failure is one line."""
    from captioner.metadata import MetadataError, write_caption

    try:
        write_caption(result.image, result.caption, mode=args.write_metadata, backup=not args.no_backup)
        return True
    except MetadataError as exc:
        say(f"error: {exc}", bar)
        return False


class _Record:
    """One segment (or a video's error) as `ResultsFile` writes it."""

    def __init__(self, record: dict):
        self.record = record

    def to_dict(self, with_attention: bool = False) -> dict:
        return self.record


def _caption_videos(captioner, videos: list[str], decoding, args, sink, several: bool) -> int:
    """Each video: its segments printed (`start --> end  caption`), as JSON Lines, into the --out .jsonl
    (committed per video), or, for one video, into the --out .vtt/.srt."""
    from captioner.inputs.images import display_name
    from captioner.video.subtitles import is_subtitle_path, segment_line, write_subtitles

    failed = 0
    for video in videos:
        result = captioner.caption_video(video, decoding, max_shot=getattr(args, "max_shot", 10.0))
        failed += result.error is not None
        if result.error:
            say(f"error: {result.error}")
        if is_subtitle_path(args.out):
            if not result.error:
                write_subtitles(args.out, result.segments)
            continue
        if sink:
            for record in result.records():
                sink.write(_Record(record))
            sink.commit()
        elif args.json:
            for record in result.records():
                print(json.dumps(record), flush=True)
        elif not result.error:
            for segment in result.segments:
                line = segment_line(segment)
                print(f"{display_name(video)}\t{line}" if several else line, flush=True)
    if failed:
        print(f"{failed} of {len(videos)} video(s) could not be captioned", file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    from captioner.cli.common import add_command, add_device_arg, add_json_arg

    c = add_command(sub, "caption", cmd_caption, "caption image and video files or folders",
                    """Caption images and videos. Folders are searched recursively for image and video files.
                    Prints the best caption per image; --json prints one JSON object per image; --out writes JSON
                    Lines (.jsonl) or CSV (.csv) and skips images already in it. Videos (.mp4 .mov .mkv .webm .avi,
                    animated .gif) get one caption per shot: 'start --> end  caption' lines, JSON objects per
                    segment, or --out x.vtt / x.srt subtitles for a single video. Photos are captioned without
                    PyTorch where the model folder allows it (see --runtime), with the same output.""")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image/video files and/or folders")
    add_dataclass_args(c, DecodingConfig, model_default=True)
    c.add_argument("--batch-size", type=int, default=8, help=f"images per batch, 1 to {MAX_BATCH} (default 8)")
    add_json_arg(c, "JSON Lines on stdout: image, candidates, error, tags, confidence, warnings")
    c.add_argument("--out", metavar="FILE", help="write results to FILE (.jsonl or .csv; - for standard output); "
                                                 "re-running resumes")
    from captioner.metadata.files import WRITE_MODES

    c.add_argument("--write-metadata", choices=WRITE_MODES,
                   help="photos: also write each caption as XMP dc:description, into photo.jpg.xmp beside the photo "
                        "(sidecar) or into the photo itself with EXIF ImageDescription and IPTC Caption-Abstract "
                        "(embed: JPEG, PNG, WebP, TIFF; the pixels are not touched, photo.jpg.bak keeps the original)")
    c.add_argument("--no-backup", action="store_true", help="with --write-metadata: keep no .bak copy of changed files")
    c.add_argument("--max-shot", type=float, default=10.0, metavar="SECONDS",
                   help="videos: shots longer than this are split into equal parts, each captioned (default 10)")
    c.add_argument("--threads", type=int, default=0, help="ONNX Runtime (or torch) threads, up to 4 x the cores "
                                                          "(default 0: all cores)")
    add_device_arg(c, "cpu, cuda or auto (default cpu; cuda and auto run on PyTorch)")
    c.add_argument("--runtime", choices=RUNTIMES, default="onnx",
                   help="onnx: ONNX Runtime and numpy, without importing PyTorch (a model folder without its ONNX "
                        "runtime, --device cuda or auto, or --ray fall back to torch by themselves); torch: the "
                        "PyTorch reference path (default onnx)")
    add_model_arg(c)
    from captioner.cli.caption_ray import add_ray_args  # --ray [ADDRESS] and its --ray-* settings (no Ray import)

    add_ray_args(c)

