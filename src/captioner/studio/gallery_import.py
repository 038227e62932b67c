"""The Gallery tab's folder import: the photos of a folder uploaded to the studio are staged in a folder of
the studio's own (under safe names), captioned and saved by `captioner.retrieval.importer.import_folders`
(photos already in the gallery skipped, files that cannot be read listed by name, never by path).
"""
from __future__ import annotations

import html
import os
import shutil
import uuid
from pathlib import Path

import gradio as gr

from captioner.studio.files import stage, uploads

#: Most files one folder import takes.
MAX_IMPORT_FILES = 2000
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"}


class GalleryImport:
    """Import a folder of photos (a part of `GalleryTab`: it gives ``studio``, the `Studio`, and ``imports``,
    the folder where uploads are staged)."""

    # ------------------------------------------------------------------ import a folder
    def import_folder(self, files, progress=gr.Progress()):
        """Caption and save every photo of an uploaded folder: duplicates (the same photo already in the
        gallery) skipped, files that are not photos or cannot be read reported, the others saved."""
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}"
        paths = uploads(files, self.studio.upload_dir, "an import file",
                        "Only folders uploaded to the studio can be imported.")
        if not paths:
            return "Choose a folder first."
        if len(paths) > MAX_IMPORT_FILES:
            return (f"⚠️ The folder has {len(paths)} files; the studio imports at most {MAX_IMPORT_FILES} at a time "
                    "(use `captioner gallery add DIR` for more).")
        photos = [p for p in paths if Path(p).suffix.lower() in PHOTO_SUFFIXES]
        ignored = len(paths) - len(photos)
        if not photos:
            return f"⚠️ No photos in that folder ({ignored} other file{'s' if ignored != 1 else ''})."
        folder = self.imports / uuid.uuid4().hex
        try:
            staged = stage(photos, folder)
            report = self._import_staged(folder, len(staged), progress)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return import_message(report, ignored)

    def _import_staged(self, folder: Path, total: int, progress) -> dict:
        """{"saved": [item ids], "skipped": [files], "failed": [(file, reason)]}: the photos of the staging
        ``folder`` (``total`` of them) captioned and saved by `captioner.retrieval.importer.import_folders`."""
        from captioner.retrieval.importer import import_folders  # imported when first used

        progress((0, total), desc="Importing", unit="photos")

        def report(done: int, _total: int, _file: str) -> None:
            progress((min(int(done), total), total), desc="Importing", unit="photos")

        summary = import_folders(self.studio.gallery, self.studio.captioner, [folder], progress=report)
        inside = str(folder) + os.sep  # the studio's staging folder is no business of the user's
        failed = [(str(name).replace(inside, ""), str(reason).replace(inside, "")) for name, reason in summary.failed]
        return {"saved": list(summary.added), "skipped": list(summary.skipped), "failed": failed}


def import_message(report: dict, ignored: int = 0) -> str:
    saved, skipped, failed = report.get("saved", []), report.get("skipped", []), report.get("failed", [])
    parts = [f"✅ Imported **{len(saved)}** photo{'s' if len(saved) != 1 else ''}"]
    if skipped:
        parts.append(f"{len(skipped)} already in the gallery (skipped)")
    if failed:
        parts.append(f"{len(failed)} could not be read")
    if ignored:
        parts.append("1 file that is not a photo ignored" if ignored == 1
                     else f"{ignored} files that are not photos ignored")
    lines = [" · ".join(parts) + "."]
    for name, reason in failed[:20]:
        lines.append(f"- {html.escape(Path(str(name)).name)}: {html.escape(str(reason))}")
    if len(failed) > 20:
        lines.append(f"- … and {len(failed) - 20} more")
    return "\n".join(lines)
