"""Exporting the live items to one JSON or CSV file, written all at once (:mod:`captioner.atomic_write`)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from captioner.atomic_write import AtomicFile

from .errors import GalleryError
from .schema import CSV_FIELDS
from .targets import check_target


class ExportMixin:
    """Export of :class:`~.gallery.Gallery` (needs ``iter_items``)."""

    def export(self, path: str | os.PathLike, fmt: str = "json") -> Path:
        """Write all live items to ``path`` as JSON (a list) or CSV; return the path.

        JSON holds everything, the candidates' attention maps included.  CSV holds the item
        fields (tags as a JSON string column) and the candidates as a JSON string column without
        their attention maps; video items carry their ``segments`` (for CSV a JSON string column,
        empty for photos).  The file is written to a temporary name first, so a failed export
        leaves no half file.
        """
        fmt = (fmt or "").lower()
        if fmt not in ("json", "csv"):
            raise GalleryError(f"Unknown export format '{fmt}': use 'json' or 'csv'")
        path = check_target(path, f"export.{fmt}")  # a new name or a regular file, nothing else
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with AtomicFile(path, "w", encoding="utf-8", newline="") as fh:
                if fmt == "json":
                    fh.write("[")
                    for i, item in enumerate(self.iter_items()):
                        fh.write(",\n" if i else "\n")
                        fh.write(json.dumps(item, ensure_ascii=False))
                    fh.write("\n]\n")
                else:
                    writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
                    writer.writeheader()
                    for item in self.iter_items():
                        light = [{k: v for k, v in c.items() if k != "attention"} for c in item["candidates"]]
                        item["candidates"] = json.dumps(light, ensure_ascii=False)
                        item["tags"] = json.dumps(item["tags"], ensure_ascii=False)
                        if "segments" in item:
                            item["segments"] = json.dumps(item["segments"], ensure_ascii=False)
                        writer.writerow(item)
        except OSError as exc:
            raise GalleryError(f"Could not export the gallery to '{path}': {exc}") from exc
        return path
