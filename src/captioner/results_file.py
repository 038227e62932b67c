"""Output files of `captioner caption --out`: what an earlier (possibly interrupted) run already wrote."""
from __future__ import annotations

import csv
import json
from pathlib import Path


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
