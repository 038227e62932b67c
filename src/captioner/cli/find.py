"""`captioner find`: gallery photos by description (the captioner's likelihood fused with full text),
or more like an item (`--like ID`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from captioner.cli.common import add_command, add_gallery_arg, add_json_arg, add_model_arg
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.errors import ConfigError


def _read_queries(path: str) -> list[str]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--queries {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _print_matches(matches, as_json: bool, header: dict | None = None) -> None:
    if as_json:
        print(json.dumps({**(header or {}), "matches": [m.to_dict() for m in matches]}, ensure_ascii=False))
        return
    for m in matches:
        caption = " ".join(m.caption.split())
        print(f"{m.item_id}\t{m.score:.3f}\t{caption}\t{m.original_name}")


def _report_unknown(matches) -> None:
    if matches.unknown_words:
        words = ", ".join(f"'{w}'" for w in matches.unknown_words)
        print(f"note: the model does not know {words} in \"{matches.query}\"; "
              "full-text search alone looked for them", file=sys.stderr)


def cmd_find(args) -> int:
    from captioner.cli.gallery import _run
    from captioner.retrieval.config import FindConfig

    given = sum(x is not None for x in (args.query, args.queries, args.like))
    if given != 1:
        raise ConfigError("give one of: a DESCRIPTION, --queries FILE, or --like ITEM_ID")
    config = config_from_args(FindConfig, args)
    queries = _read_queries(args.queries) if args.queries is not None else None
    if queries is not None and not queries:
        raise ConfigError(f"--queries {args.queries}: holds no description (one per line)")
    if args.query is not None and not args.query.strip():
        raise ConfigError("the description is empty")
    return _run(lambda gallery, a: _find(gallery, a, config, queries), args)


def _find(gallery, args, config, queries) -> int:
    from captioner.retrieval.index import photo_index, stderr_progress
    from captioner.retrieval.more_like_this import similar
    from captioner.retrieval.search import find
    from captioner.runtime.choice import load_captioner

    # numpy likelihood over the folder's decoder.safetensors, ONNX encoder for photos saved without features (no
    # torch); PyTorch with --runtime torch or for a model folder without its ONNX runtime
    captioner = load_captioner(args.model, runtime=getattr(args, "runtime", "onnx"))
    if args.like is not None:
        matches = similar(gallery, args.like, config.top, captioner=captioner)
        _print_matches(matches, args.json, {"like": args.like})
        return 0
    index = photo_index(gallery, captioner, generic_captions=config.generic_captions, progress=stderr_progress,
                        priors=config.prior_weight > 0)
    if queries is None:
        matches = find(gallery, captioner, args.query, config.top, config, index=index)
        _report_unknown(matches)
        if args.json:
            print(json.dumps(matches.to_dict(), ensure_ascii=False))
        else:
            _print_matches(matches, False)
            if not matches:
                print("(nothing found)", file=sys.stderr)
        return 0
    for query in queries:  # JSON Lines: one line per query, in order
        matches = find(gallery, captioner, query, config.top, config, index=index)
        _report_unknown(matches)
        print(json.dumps(matches.to_dict(), ensure_ascii=False), flush=True)
    return 0


def register(sub) -> None:
    from captioner.retrieval.config import FindConfig

    p = add_command(sub, "find", cmd_find, "find gallery photos by description, or more like an item",
                    """Rank the gallery's photos by how likely the captioner would describe each with DESCRIPTION
                    (less each photo's general prior), fused with full-text search; or, with --like ITEM_ID, by how
                    close their features are. Scored with numpy, without PyTorch (--runtime onnx), when the model
                    folder carries its ONNX runtime; otherwise, or with --runtime torch, with PyTorch (the same
                    ranking).""")
    p.add_argument("query", nargs="?", metavar="DESCRIPTION", help="what the photo shows, in plain words")
    p.add_argument("--queries", metavar="FILE", help="one description per line (- for stdin); prints JSON Lines, "
                                                     "one line per description")
    p.add_argument("--like", metavar="ITEM_ID", type=int, help="more like this item (its features, cosine)")
    add_gallery_arg(p)
    add_json_arg(p, "print JSON (ids, file names, scores)")
    add_model_arg(p)
    p.add_argument("--runtime", choices=("onnx", "torch"), default="onnx",
                   help="onnx: numpy and ONNX Runtime, without importing PyTorch (a model folder without its ONNX "
                        "runtime falls back to torch by itself); torch: the PyTorch reference path (default onnx)")
    add_dataclass_args(p, FindConfig)
