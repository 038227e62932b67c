"""`captioner gallery`: check, repair, search and export a gallery from the command line."""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from captioner.errors import CaptionerError

if TYPE_CHECKING:  # the storage package (sqlite-utils) loads only when a gallery command runs
    from captioner.storage import Gallery


def open_gallery(args) -> Gallery:
    """The gallery of ``--gallery`` (default: the user's); a missing one is an error, not created."""
    from captioner.storage import Gallery, GalleryError, default_gallery_dir
    from captioner.storage.gallery import DB_NAME

    folder = Path(args.gallery).expanduser() if args.gallery else default_gallery_dir()
    if folder.exists() and not folder.is_dir():
        raise CaptionerError(f"'{folder}' is a file, not a gallery folder")
    if not (folder / DB_NAME).is_file():
        raise CaptionerError(f"There is no gallery at '{folder}' (no {DB_NAME} there): "
                             "pass --gallery DIR, the folder the studio saves to")
    try:
        return Gallery(folder)
    except GalleryError as exc:
        raise CaptionerError(str(exc)) from exc


def _run(command, args) -> int:
    """Run ``command(gallery, args)``; gallery and SQLite errors become one-line CaptionerErrors."""
    from captioner.storage import GalleryError

    gallery = open_gallery(args)
    try:
        return command(gallery, args)
    except GalleryError as exc:
        raise CaptionerError(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise CaptionerError(f"The gallery at '{gallery.folder}' could not be read: {exc}") from exc
    finally:
        gallery.close()


# ------------------------------------------------------------------ check / repair
def find_problems(gallery: Gallery) -> list[str]:
    """Everything wrong with the gallery, one line each (empty: all is well)."""
    problems = []
    integrity = gallery.integrity_check()
    if integrity != "ok":
        problems += [f"integrity: {line}" for line in integrity.splitlines()]
    problems += [f"orphaned image file (no item uses it): {path}" for path in gallery.orphan_images()]
    problems += [f"missing image file: item {item_id}" for item_id in gallery.missing_images()]
    problems += [f"missing video file: item {item_id}" for item_id in gallery.missing_videos()]
    return problems


def _summary(gallery: Gallery) -> str:
    return f"gallery {gallery.folder}: {gallery.count()} items, schema version {gallery.schema_version}"


def check(gallery: Gallery, args) -> int:
    print(_summary(gallery))
    problems = find_problems(gallery)
    for line in problems:
        print(line)
    if not problems:
        print("all is well")
        return 0
    print(f"{len(problems)} problem(s) found; `captioner gallery repair` removes orphaned files "
          "and rebuilds the search index")
    return 1


def repair(gallery: Gallery, args) -> int:
    print(_summary(gallery))
    removed = gallery.remove_orphan_images()
    for path in removed:
        print(f"removed orphaned image file: {path}")
    gallery.rebuild_search_index()
    print(f"removed {len(removed)} orphaned image file(s); rebuilt the search index")
    problems = find_problems(gallery)
    for line in problems:
        print(f"still wrong: {line}")
    return 1 if problems else 0


# ------------------------------------------------------------------ search / export
def search(gallery: Gallery, args) -> int:
    items, total, match_all = _matches(gallery, args.query, args.limit)
    for item in items:
        if args.json:
            print(json.dumps(item, ensure_ascii=False))
        else:
            for line in _lines(item):
                print(line)
    if total > len(items):
        print(f"({len(items)} of {total} shown; use --limit)", file=sys.stderr)
    if total and not match_all:
        print("(no item has every word: these have some of them)", file=sys.stderr)
    return 0


def _matches(gallery: Gallery, query: str, limit: int) -> tuple[list[dict], int, bool]:
    """The first ``limit`` search results, the number of matches, and whether all words matched."""
    items: list[dict] = []
    page_no = 1
    while True:
        page = gallery.search(query, page=page_no, per_page=min(limit, 1000))
        items += page.items
        if len(items) >= limit or page_no >= page.pages:
            return items[:limit], page.total, page.match_all
        page_no += 1


def _line(item: dict) -> str:
    caption = " ".join(item["caption"].split())
    return f"{item['id']}\t{caption}\t{item['original_name'] or ''}"


def _lines(item: dict) -> list[str]:
    """A photo's line; for a video, one line per matching segment: id, its caption, "NAME at START-END"."""
    segments = item.get("matched_segments") or []
    if item.get("kind") != "video" or not segments:
        return [_line(item)]
    name = item["original_name"] or "video"
    return [f"{item['id']}\t{' '.join(s['caption'].split())}\t{name} at {_clock(s['start'])}-{_clock(s['end'])}"
            for s in segments]


def _clock(seconds: float) -> str:
    """Seconds as HH:MM:SS.mmm."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def export(gallery: Gallery, args) -> int:
    fmt = args.format or ("csv" if Path(args.file).suffix.lower() == ".csv" else "json")
    path = gallery.export(args.file, fmt)
    print(f"exported {gallery.count()} items to {path} ({fmt})")
    return 0


# ------------------------------------------------------------------ parser
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def register(sub) -> None:
    gallery_help = "gallery folder (default: your data directory, where the studio saves)"
    g = sub.add_parser("gallery", help="check, repair, search or export the caption gallery",
                       description="Look after a gallery folder (gallery.db and images/) without the studio.")
    g.add_argument("--gallery", metavar="DIR", help=gallery_help)
    actions = g.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    # --gallery is accepted after the action too; SUPPRESS keeps an unset one from hiding the other
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gallery", metavar="DIR", default=argparse.SUPPRESS, help=gallery_help)

    def action(name: str, command, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=lambda args: _run(command, args))
        return p

    action("check", check, "check the database, the search index and the image files (exit 1 on problems)")
    action("repair", repair, "remove orphaned image files and rebuild the search index")
    s = action("search", search, "print matching items: id, caption and file name, one per line "
               "(videos: one line per matching segment, with its times)")
    s.add_argument("query", metavar="QUERY", help="words to find (empty: every item, newest first)")
    s.add_argument("--json", action="store_true", help="print JSON Lines (one item per line)")
    s.add_argument("--limit", type=_positive, default=50, help="print at most this many items (default 50)")
    e = action("export", export, "write every item to a JSON or CSV file")
    e.add_argument("file", metavar="FILE")
    e.add_argument("--format", choices=["json", "csv"],
                   help="file format (default: csv for a .csv FILE, else json)")
