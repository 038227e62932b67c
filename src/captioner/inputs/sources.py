"""Finding image files under folders, and reading what an earlier run already wrote."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from captioner.inputs.images import IMAGE_EXTENSIONS


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """Files as given; folders searched recursively for common image extensions (sorted)."""
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            out.append(str(p))
    return out


def already_done(out_path: Path) -> set[str]:
    """Images with a successful line in an earlier (possibly interrupted) output file."""
    if not out_path.exists():
        return set()
    done = set()
    if out_path.suffix.lower() == ".csv":
        with open(out_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("image") and not row.get("error"):
                    done.add(row["image"])
        return done
    for line in out_path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interruption
        if isinstance(rec, dict) and rec.get("image") and not rec.get("error"):
            done.add(rec["image"])
    return done
