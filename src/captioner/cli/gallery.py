"""`captioner gallery`: check, repair, back up, search and export a gallery from the command line."""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from captioner.cli.common import add_command, add_gallery_arg, add_json_arg
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.errors import CaptionerError
from captioner.storage.options import ListOptions

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
        if folder.is_dir() and not (folder / DB_NAME).exists():
            from captioner.storage.opening import check_new_folder

            try:
                check_new_folder(folder, DB_NAME)  # photos without their database: say how to recover
            except GalleryError as exc:
                raise CaptionerError(f"There is no gallery at '{folder}': {exc}") from exc
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
    trashed = gallery.trash(1, 1).total
    in_trash = f" (and {trashed} in the trash)" if trashed else ""
    return f"gallery {gallery.folder}: {gallery.count()} items{in_trash}, schema version {gallery.schema_version}"


def check(gallery: Gallery, args) -> int:
    from captioner.storage.quarantine import quarantined

    print(_summary(gallery))
    problems = find_problems(gallery)
    for line in problems:
        print(line)
    waiting = len(quarantined(gallery.folder))
    if waiting:
        print(f"(note: {waiting} file(s) in the quarantine, {gallery.folder / 'quarantine'}; "
              "`captioner gallery repair --purge` deletes them)")
    if not problems:
        print("all is well")
        return 0
    print(f"{len(problems)} problem(s) found; `captioner gallery repair` moves orphaned files to the "
          "quarantine and rebuilds the search index")
    return 1


def repair(gallery: Gallery, args) -> int:
    """Orphaned files go to the quarantine (refused when too many would, see storage.quarantine);
    --purge only empties the quarantine."""
    from captioner.storage import quarantine

    if args.purge:
        count = quarantine.purge(gallery.folder)
        print(f"deleted {count} file(s) from the quarantine ({gallery.folder / quarantine.QUARANTINE_DIR})")
        return 0
    report = quarantine.quarantine_orphans(gallery, force=args.force)  # refuses before printing anything
    print(_summary(gallery))
    for path in report.deleted_temp:
        print(f"deleted a temporary file left by an interrupted save: {path}")
    for path in report.moved:
        print(f"moved orphaned file to the quarantine: {path}")
    gallery.rebuild_search_index()
    where = f" to {report.folder}" if report.folder else " to the quarantine"
    print(f"moved {len(report.moved)} orphaned file(s){where} (`captioner gallery repair --purge` deletes them); "
          "rebuilt the search index")
    problems = find_problems(gallery)
    for line in problems:
        print(f"still wrong: {line}")
    return 1 if problems else 0


# ------------------------------------------------------------------ backup / restore-db
def backup(gallery: Gallery, args) -> int:
    from captioner.storage.backup import backup as copy

    path = copy(gallery, args.dest)
    print(f"backed up the database of {gallery.folder} ({gallery.count()} items) to {path}; the picture files "
          f"are in {gallery.images_dir} (and videos/): copy those folders too for a complete backup")
    return 0


def restore_db(args) -> int:
    """`restore-db BACKUP`: works where opening refuses (an emptied or lost gallery.db)."""
    from captioner.storage import Gallery, GalleryError, default_gallery_dir
    from captioner.storage.backup import describe_backup, restore
    from captioner.storage.gallery import DB_NAME

    folder = Path(args.gallery).expanduser() if args.gallery else default_gallery_dir()
    try:
        describe_backup(Path(args.backup).expanduser())
        saved = restore(folder, args.backup, DB_NAME)
        with Gallery(folder) as gallery:  # migrates an older backup (keeping a copy of it)
            print(f"restored {gallery.db_path} from {args.backup}: {gallery.count()} items")
    except GalleryError as exc:
        raise CaptionerError(str(exc)) from exc
    if saved:
        print(f"the database it replaced was saved as {saved}")
    print("run `captioner gallery check` to see photos added since the backup (orphaned files)")
    return 0


# ------------------------------------------------------------------ search / export
def search(gallery: Gallery, args) -> int:
    options = config_from_args(ListOptions, args)
    items, total, match_all = _matches(gallery, args.query, args.limit, options)
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


def _matches(gallery: Gallery, query: str | None, limit: int,
             options: ListOptions | None = None) -> tuple[list[dict], int, bool]:
    """The first ``limit`` search results (``query`` None: browse), the number of matches, and whether
    all words matched."""
    options = options or ListOptions()
    items: list[dict] = []
    page_no = 1
    while True:
        if query is None:
            page = gallery.browse(page=page_no, per_page=min(limit, 1000), **options.keywords())
        else:
            page = gallery.search(query, page=page_no, per_page=min(limit, 1000), **options.keywords(search=True))
        items += page.items
        if len(items) >= limit or page_no >= page.pages:
            return items[:limit], page.total, page.match_all
        page_no += 1


def list_items(gallery: Gallery, args) -> int:
    """`gallery list`: items, newest first (or as sorted and filtered), one line each."""
    items, total, _ = _matches(gallery, None, args.limit, config_from_args(ListOptions, args))
    for item in items:
        print(json.dumps(item, ensure_ascii=False) if args.json else _line(item))
    if total > len(items):
        print(f"({len(items)} of {total} shown; use --limit)", file=sys.stderr)
    return 0


def models(gallery: Gallery, args) -> int:
    for name in gallery.models():
        print(name)
    return 0


# ------------------------------------------------------------------ edit / history / trash
def _item(gallery: Gallery, item_id: int, include_trash: bool = False) -> dict:
    item = gallery.get(item_id, include_trash=include_trash)
    if item is None:
        where = "" if include_trash else " (see `captioner gallery trash` for deleted items)"
        raise CaptionerError(f"There is no item {item_id} in the gallery{where}")
    return item


def edit(gallery: Gallery, args) -> int:
    caption = " ".join(args.caption.split())
    if not caption:
        raise CaptionerError("The new caption is empty: give the text in quotes, e.g. "
                             "captioner gallery edit 12 \"my dog at the beach\"")
    old = _item(gallery, args.id)["caption"]
    gallery.update_caption(args.id, caption)
    print(f"item {args.id}: “{caption}” (was “{old}”; `captioner gallery history {args.id}` lists earlier ones)")
    return 0


def history(gallery: Gallery, args) -> int:
    item = _item(gallery, args.id, include_trash=True)
    for entry in gallery.history(args.id):
        print(f"{entry['replaced_at']}\t{' '.join(entry['caption'].split())}")
    print(f"now\t{' '.join(item['caption'].split())}")
    return 0


def _each(ids: list[int], step, done: str, missing: str) -> int:
    """Run ``step(id)`` for every id; report those it found nothing for (exit 2), keep going."""
    failed = []
    for item_id in ids:
        if step(item_id):
            print(f"item {item_id}: {done}")
        else:
            failed.append(item_id)
            print(f"error: item {item_id} {missing}", file=sys.stderr)
    return 2 if failed else 0


def delete(gallery: Gallery, args) -> int:
    return _each(args.ids, gallery.delete, "moved to the trash (`captioner gallery restore` brings it back)",
                 "is not in the gallery (or already in the trash)")


def restore(gallery: Gallery, args) -> int:
    return _each(args.ids, gallery.restore, "restored", "is not in the trash")


def trash(gallery: Gallery, args) -> int:
    page = gallery.trash(1, args.limit)
    for item in page.items:
        caption = " ".join(item["caption"].split())
        print(f"{item['id']}\t{item['deleted_at']}\t{caption}\t{item['original_name'] or ''}")
    if page.total > len(page.items):
        print(f"({len(page.items)} of {page.total} shown; use --limit)", file=sys.stderr)
    if not page.total:
        print("the trash is empty", file=sys.stderr)
    return 0


def empty_trash(gallery: Gallery, args) -> int:
    waiting = gallery.trash(1, 1).total
    if waiting and not args.yes:
        raise CaptionerError(f"empty-trash removes {waiting} item(s) and their files for good: "
                             "add --yes to go ahead")
    removed = gallery.empty_trash()
    print(f"removed {removed} item(s) from the trash for good")
    return 0


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
    fmt = args.format or {".csv": "csv", ".html": "html-alt", ".htm": "html-alt"}.get(Path(args.file).suffix.lower(),
                                                                                    "json")
    if fmt == "html-alt":
        from captioner.metadata.alt_text import write_html_alt

        path, count = write_html_alt(gallery, args.file)
        print(f"exported {count} items to {path} (<img alt> lines)")
        return 0
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
    add_gallery_arg(g, gallery_help)
    actions = g.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    # --gallery is accepted after the action too; SUPPRESS keeps an unset one from hiding the other
    common = argparse.ArgumentParser(add_help=False)
    add_gallery_arg(common, gallery_help, default=argparse.SUPPRESS)

    def action(name: str, command, help: str) -> argparse.ArgumentParser:
        return add_command(actions, name, lambda args: _run(command, args), help, help, parents=[common])

    action("check", check, "check the database, the search index and the image files (exit 1 on problems)")
    rp = action("repair", repair, "move orphaned image files to the gallery's quarantine folder and rebuild the "
                "search index (refused when more than 20 files, or a tenth of them, would move)")
    rp.add_argument("--force", action="store_true", help="move the orphaned files even when there are many")
    rp.add_argument("--purge", action="store_true", help="only delete the files in the quarantine, for good")
    bk = action("backup", backup, "copy the gallery's database to a new file, consistently, even while the studio "
                "runs (the images/ and videos/ folders are not copied)")
    bk.add_argument("dest", metavar="DEST", help="a new file name (or a folder: gallery-DATE.db in it)")
    rd = add_command(actions, "restore-db", restore_db,
                     "put a database backup back in place (the current one is saved beside it first)",
                     """Replace the gallery's database with a backup (from `gallery backup`, or gallery.db.v*.bak
                     kept before a migration).""", parents=[common])
    rd.add_argument("backup", metavar="BACKUP")
    s = action("search", search, "print matching items: id, caption and file name, one per line "
               "(videos: one line per matching segment, with its times)")
    s.add_argument("query", metavar="QUERY", help="words to find (empty: every item, newest first): all of the "
                   "words; AND, OR, NOT (or -word), \"a phrase\", ( ), word* work as usual")
    add_json_arg(s, "print JSON Lines (one item per line)")
    s.add_argument("--limit", type=_positive, default=50, help="print at most this many items (default 50)")
    add_dataclass_args(s, ListOptions)
    ls = action("list", list_items, "print items, newest first (or sorted and filtered): id, caption, file name")
    add_json_arg(ls, "print JSON Lines (one item per line)")
    ls.add_argument("--limit", type=_positive, default=50, help="print at most this many items (default 50)")
    add_dataclass_args(ls, ListOptions)
    action("models", models, "print the model names of the items (for --model)")
    ed = action("edit", edit, "replace an item's caption (the old one is kept: see history)")
    ed.add_argument("id", type=int, metavar="ID")
    ed.add_argument("caption", metavar="CAPTION", help="the new caption, in quotes")
    hi = action("history", history, "print an item's earlier captions, oldest first, then the current one")
    hi.add_argument("id", type=int, metavar="ID")
    de = action("delete", delete, "move items to the trash (restore brings them back)")
    de.add_argument("ids", type=int, nargs="+", metavar="ID")
    re_ = action("restore", restore, "bring items back from the trash")
    re_.add_argument("ids", type=int, nargs="+", metavar="ID")
    tr = action("trash", trash, "print the items in the trash: id, when deleted, caption, file name")
    tr.add_argument("--limit", type=_positive, default=50, help="print at most this many items (default 50)")
    et = action("empty-trash", empty_trash, "remove the items in the trash and their files for good")
    et.add_argument("--yes", action="store_true", help="really do it (without it nothing is removed)")
    from captioner.cli import gallery_add

    gallery_add.register(actions, common)
    e = action("export", export, "write every item to a JSON or CSV file")
    e.add_argument("file", metavar="FILE")
    e.add_argument("--format", choices=["json", "csv", "html-alt"],
                   help="file format: json, csv, or html-alt (one <img src alt> line per photo, the caption as alt "
                        "text; src relative to FILE's folder) (default: csv for a .csv FILE, html-alt for .html, "
                        "else json)")
