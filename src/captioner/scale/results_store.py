"""The output folder of a Ray job: one file per shard, `part-<run>-<shard>.parquet` (or `.jsonl`),
each row one photo with the fields of `captioner caption --json` (`CaptionResult.to_dict`).

- A shard's file name is fixed before the job starts (the run's id and the shard's number), and the file
  is written whole under a temporary name and then renamed (a single PUT on object stores), so a shard
  that Ray runs again after a worker died replaces its own file: never half a file, never a row twice.
- Each run writes under its own id and never touches older files; a re-run skips photos that already
  have a successful row, and retries failed ones (writing a row only when the outcome changed).
- `read_results` reads every file and keeps one row per photo (a successful one when there is one,
  else the latest error), whatever crashes happened between runs.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from captioner.atomic_write import write_atomic
from captioner.errors import CaptionerError
from captioner.scale.sources import _split, is_uri

PART = re.compile(r"^part-(?P<run>[0-9A-Za-z]+-[0-9a-f]+)-(?P<shard>\d+)\.(?P<fmt>parquet|jsonl)$")


class OutputFolderError(CaptionerError):
    """The --out folder of a Ray job cannot be used."""


def shard_name(run_id: str, shard: int, fmt: str) -> str:
    return f"part-{run_id}-{shard:06d}.{fmt}"


def _encode(records: list[dict], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(records), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_shard(out_dir: str, run_id: str, shard: int, records: list[dict], fmt: str) -> str:
    """Write one shard's rows as one file, atomically; returns its name."""
    name = shard_name(run_id, shard, fmt)
    data = _encode(records, fmt)
    if is_uri(out_dir):
        fs, root = _split(out_dir)
        with fs.open_output_stream(f"{root.rstrip('/')}/{name}") as f:  # object stores: one PUT, whole or nothing
            f.write(data)
        return name
    write_atomic(Path(out_dir) / name, data, fsync=True)
    return name


def prepare_folder(out_dir: str) -> None:
    """Create the --out folder (local) or check it can be listed (remote); one clear error otherwise."""
    if is_uri(out_dir):
        try:
            fs, root = _split(out_dir)
            fs.create_dir(root, recursive=True)
        except Exception as exc:
            raise OutputFolderError(f"--out {out_dir}: cannot use it ({exc})") from None
        return
    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise OutputFolderError(f"--out {out_dir}: with --ray, --out is a folder (one file per shard of photos); "
                                f"{out_dir} is a file")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"--out {out_dir}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputFolderError(f"--out {out_dir}: the folder is not writable")


def part_files(out_dir: str) -> list[str]:
    """The complete shard files in the folder, oldest run first (temporary files are not listed)."""
    if is_uri(out_dir):
        import pyarrow.fs as pafs

        fs, root = _split(out_dir)
        if fs.get_file_info(root).type != pafs.FileType.Directory:
            return []
        names = [Path(f.path).name for f in fs.get_file_info(pafs.FileSelector(root))]
    else:
        p = Path(out_dir)
        names = [f.name for f in p.iterdir()] if p.is_dir() else []
    return sorted(n for n in names if PART.match(n))


def _read_part(out_dir: str, name: str, columns: list[str] | None = None) -> list[dict]:
    if is_uri(out_dir):
        fs, root = _split(out_dir)
        with fs.open_input_file(f"{root.rstrip('/')}/{name}") as f:
            data = f.read()
    else:
        data = (Path(out_dir) / name).read_bytes()
    if name.endswith(".jsonl"):
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        return [{k: r.get(k) for k in columns} for r in rows] if columns else rows
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data), columns=columns).to_pylist()


def _rows(out_dir: str, columns: list[str] | None = None):
    for name in part_files(out_dir):
        try:
            rows = _read_part(out_dir, name, columns)
        except Exception as exc:  # a damaged file: its photos are captioned again
            import sys

            print(f"warning: {out_dir}/{name} cannot be read ({type(exc).__name__}: {exc}); its photos are "
                  "captioned again", file=sys.stderr)
            continue
        yield from rows


def scan(out_dir: str) -> tuple[set[str], dict[str, str]]:
    """(photos with a successful row, {photo: its latest error} for the others)."""
    done: set[str] = set()
    errors: dict[str, str] = {}
    for row in _rows(out_dir, ["image", "error"]):
        image = row.get("image")
        if not image:
            continue
        if row.get("error"):
            errors[image] = row["error"]
        else:
            done.add(image)
    return done, {k: v for k, v in errors.items() if k not in done}


def read_results(out_dir: str) -> list[dict]:
    """One row per photo (a successful one when there is one, else the latest error), sorted by photo."""
    best: dict[str, dict] = {}
    for row in _rows(out_dir):
        image = row.get("image")
        if image and (image not in best or best[image].get("error")):  # a success stays; a later row wins
            best[image] = row
    return [best[k] for k in sorted(best)]
