"""Saving into the gallery: a photo with its caption (:meth:`SavingMixin.save`, or a whole
``CaptionResult`` with :meth:`SavingMixin.save_result`) and a captioned video
(:meth:`SavingMixin.save_video`).  Input is checked before anything is written; the file goes into
place before its row, and a duplicate (the same photo with the same caption, the same video with the
same shots) raises :class:`DuplicateItemError`."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from . import files
from ._sqlite_utils import sqlite_utils
from .errors import DuplicateItemError, GalleryError
from .features import features_blob
from .schema import SEGMENTS_TABLE, TABLE
from .values import (
    as_confidence,
    as_seconds,
    candidates_json,
    distinct,
    file_name,
    norm,
    optional_int,
    segment_rows,
    tags_json,
    utc_now,
    video_caption,
)


class SavingMixin:
    """Saving of :class:`~.gallery.Gallery` (needs its files, features and ``_write``)."""

    def _insert_row(self, encoded: files.EncodedImage, rel: str, record: dict, features: Any = None) -> int:
        """Insert the row (refusing a duplicate); under the write lock, restore the file if a delete took it."""
        with self._write() as db:
            rows = db.execute(f"SELECT id, caption FROM {TABLE} WHERE image_hash = ? AND deleted_at IS NULL "
                              "ORDER BY id", [record["image_hash"]]).fetchall()
            for item_id, caption in rows:
                if norm(caption) == norm(record["caption"]):
                    name = record["original_name"] or "this photo"
                    raise DuplicateItemError(f"{name} is already in the gallery with this caption (item "
                                             f"{item_id}); it was not saved again", item_id)
            if not (self.images_dir / rel).exists():
                self._write_image(encoded, rel, force=True)
            item_id = db[TABLE].insert(record).last_pk
            if features is not None:
                self._store_features(db, item_id, *features)
            return item_id

    # ------------------------------------------------------------------- API
    def save(self, image: Any, original_name: str | None, caption: str,
             candidates: list[dict] | None = None, beam_size: int | None = None,
             model_name: str | None = None, width: int | None = None,
             height: int | None = None, *, tags: Any = None, confidence: float | None = None,
             features: Any = None) -> int:
        """Store an image with its caption; return the new item id.

        ``image`` may be bytes, a file path or a PIL image; identical bytes are
        stored once.  ``candidates`` are beam results (dicts with at least a
        ``caption``; tokens, scores and attention maps are kept as JSON).
        ``tags``: what is in the picture (dicts with ``label`` and ``score``, or
        ``Tag`` objects), searched like the caption; ``confidence``: the
        caption's calibrated confidence, 0..1; ``features``: the encoder grid
        (an array, kept as float16 for ``model_name``; see :meth:`set_features`).
        Raises GalleryError, leaving the gallery unchanged, for bad input, and
        DuplicateItemError (with ``.item_id``) when the same photo is already
        in the gallery with the same caption.
        """
        self._check_writable()
        if original_name is None and isinstance(image, (str, os.PathLike)):
            original_name = Path(image).name
        original_name = "" if original_name is None else file_name(str(original_name))
        label = original_name or "image"
        if not isinstance(caption, str):
            raise GalleryError("The caption must be text; the gallery was not changed")
        candidates_text, attention, cand_captions = candidates_json(candidates)
        width, height = optional_int(width, "width"), optional_int(height, "height")
        beam_size = optional_int(beam_size, "beam size")
        tags_text, tag_text = tags_json(tags)
        confidence = as_confidence(confidence)
        grid = None if features is None else (*features_blob(features), self._feature_model(model_name))
        encoded = files.encode_image(image, label)
        digest, rel = self._image_file(encoded)
        # Candidate captions other than the chosen one, for search; if the
        # caption is edited later the old text therefore stops matching.
        seen = {norm(caption)}
        alternatives = []
        for text in cand_captions:
            if norm(text) not in seen:
                seen.add(norm(text))
                alternatives.append(text)
        record = {
            "image_hash": digest, "image_file": rel, "original_name": original_name,
            "width": encoded.width if width is None else width,
            "height": encoded.height if height is None else height,
            "caption": caption, "alternatives": "\n".join(alternatives),
            "candidates": candidates_text,
            "beam_size": beam_size,
            "model_name": None if model_name is None else str(model_name), "saved_at": utc_now(), "attention": attention,
            "tags": tags_text, "tag_text": tag_text, "confidence": confidence,
        }
        new_file = not (self.images_dir / rel).exists()
        try:
            self._write_image(encoded, rel)
        except OSError as exc:
            raise GalleryError(f"Could not write the image '{label}' into the gallery: "
                               f"{exc}; the gallery was not changed") from exc
        try:
            return self._insert_row(encoded, rel, record, grid)
        except DuplicateItemError:
            raise
        except BaseException:
            if new_file:  # no image file without a row (e.g. the disk filled up before the row)
                with contextlib.suppress(Exception):
                    self._remove_unused_files([(rel, None)])
            raise

    def save_result(self, image: Any, result: Any, *, name: str | None = None, model: str | None = None,
                    choice: int = 0, caption: str | None = None) -> int:
        """Store a photo with its :class:`~captioner.result.CaptionResult`; return the new item id.

        Keeps everything the result knows: the caption (candidate ``choice``, the best by default),
        every candidate (scores, confidences, sources and attention maps), the tags, the confidence,
        the beam size, the picture's size and, when the result carries them (``keep_features=True``)
        and ``model`` is given, the encoder features.  ``name``: the file name shown (None: the
        file's name when ``image`` is a path); ``model``: the model's name; ``caption``: the user's own
        text instead of the candidate's (an edited caption keeps no confidence: that was the model's).
        Raises GalleryError for a result without a caption (one that failed) and as :meth:`save` does.
        """
        candidates = list(getattr(result, "candidates", None) or [])
        if getattr(result, "error", None) is not None or not candidates:
            raise GalleryError(f"There is no caption to save: {getattr(result, 'error', None) or 'no candidates'}; "
                               "the gallery was not changed")
        index = optional_int(choice, "candidate number") or 0
        if not 0 <= index < len(candidates):
            raise GalleryError(f"There is no candidate {choice} (0 to {len(candidates) - 1}); "
                               "the gallery was not changed")
        chosen = candidates[index]
        text = chosen.caption if caption is None else caption
        confidence = getattr(chosen, "confidence", None)
        if confidence is None and index == 0:
            confidence = getattr(result, "confidence", None)
        if text != chosen.caption:
            confidence = None
        features = getattr(result, "features", None) if model is not None else None
        return self.save(image, name, text, [c.to_dict(with_attention=True) for c in candidates],
                         beam_size=getattr(result, "beam_size", None), model_name=model,
                         width=getattr(result, "width", None), height=getattr(result, "height", None),
                         tags=list(getattr(result, "tags", None) or []) or None, confidence=confidence,
                         features=features)

    def save_video(self, video: Any, original_name: str | None, segments: list[dict], *, poster: Any = None,
                   model_name: str | None = None, beam_size: int | None = None, width: int | None = None,
                   height: int | None = None, duration: float | None = None, tags: Any = None,
                   confidence: float | None = None) -> int:
        """Store a captioned video; return the new item id.

        ``video``: bytes or a file path (not decoded here), stored once per content under ``videos/``.
        ``segments``: dicts with ``start`` and ``end`` (seconds), ``caption`` and optional ``candidates``
        (dicts with at least a ``caption``; attention maps are dropped), in order.  ``poster``: a PIL
        image, path or bytes shown as the item's picture (None: a small grey placeholder).  The item's
        caption is the distinct segment captions joined with " · "; ``duration`` defaults to the last
        segment's end.  Segments may carry ``tags`` (as :meth:`save` takes them), searched with the
        segment; the item's tags are ``tags`` if given, else every segment's tags (best score each).
        Raises GalleryError, leaving the gallery unchanged, for bad input, and DuplicateItemError (with
        ``.item_id``) when the same video (same bytes) is already in the gallery with the same shots
        (same start and end times, same captions, case and spacing aside).
        """
        self._check_writable()
        if original_name is None and isinstance(video, (str, os.PathLike)):
            original_name = Path(video).name
        original_name = "" if original_name is None else file_name(str(original_name))
        label = original_name or "video"
        rows = segment_rows(segments)
        duration = max(r["end"] for r in rows) if duration is None else as_seconds(duration, "duration")
        width, height = optional_int(width, "width"), optional_int(height, "height")
        beam_size = optional_int(beam_size, "beam size")
        confidence = as_confidence(confidence)
        if tags is None and any(r["tags"] is not None for r in rows):
            tags = [t for r in rows for t in json.loads(r["tags"] or "[]")]
        tags_text, tag_text = tags_json(tags)
        if not isinstance(video, (bytes, bytearray, memoryview, str, os.PathLike)):
            raise GalleryError(f"Could not read the video '{label}': expected bytes or a file path, got "
                               f"{type(video).__name__}; the gallery was not changed")
        encoded = files.encode_image(files.placeholder_poster() if poster is None else poster, f"{label} (poster)")
        digest, rel = self._image_file(encoded)
        captions = [r["caption"] for r in rows]
        alternatives = distinct([a for r in rows for a in r["alternatives"].split("\n")], exclude=captions)
        record = {
            "image_hash": digest, "image_file": rel, "original_name": original_name,
            "width": encoded.width if width is None else width,
            "height": encoded.height if height is None else height,
            "caption": video_caption(captions), "alternatives": "\n".join(alternatives), "candidates": "[]",
            "beam_size": beam_size, "model_name": None if model_name is None else str(model_name),
            "saved_at": utc_now(), "attention": None, "kind": "video", "duration": duration,
            "tags": tags_text, "tag_text": tag_text, "confidence": confidence,
        }
        try:
            tmp, video_rel = self._copy_video(video, label)
        except OSError as exc:
            raise GalleryError(f"Could not write the video '{label}' into the gallery: "
                               f"{exc}; the gallery was not changed") from exc
        try:
            self._write_image(encoded, rel)
            with self._write() as db:
                same = self._same_video(db, video_rel, rows)
                if same is not None:
                    raise DuplicateItemError(f"{label} is already in the gallery with these shots and captions "
                                             f"(item {same}); it was not saved again", same)
                if not (self.images_dir / rel).exists():  # a delete took it since
                    self._write_image(encoded, rel, force=True)
                # in place under the write lock: deletes only remove unused videos under it too
                target = self.folder / video_rel
                if target.exists():
                    os.unlink(tmp)
                else:
                    os.replace(tmp, target)
                tmp = None
                item_id = db[TABLE].insert({**record, "video_file": video_rel}).last_pk
                db.conn.executemany(
                    f'INSERT INTO {SEGMENTS_TABLE} (item_id, idx, start, "end", caption, alternatives, candidates, '
                    "tags, tag_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(item_id, r["idx"], r["start"], r["end"], r["caption"], r["alternatives"], r["candidates"],
                      r["tags"], r["tag_text"]) for r in rows])
                return item_id
        except OSError as exc:
            raise GalleryError(f"Could not write the video '{label}' into the gallery: "
                               f"{exc}; the gallery was not changed") from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    @staticmethod
    def _same_video(db: sqlite_utils.Database, video_rel: str, rows: list[dict]) -> int | None:
        """The id of a live video item with this video file's content (its hash names the file) and the
        same shots as ``rows`` (times to the millisecond, captions case and spacing aside), or None."""
        stem = video_rel.rsplit(".", 1)[0] + "."
        ids = [r[0] for r in db.execute(
            f"SELECT id FROM {TABLE} WHERE kind = 'video' AND deleted_at IS NULL "
            "AND substr(video_file, 1, ?) = ? ORDER BY id", [len(stem), stem]).fetchall()]
        wanted = [(round(r["start"], 3), round(r["end"], 3), norm(r["caption"])) for r in rows]
        for item_id in ids:
            stored = db.execute(f'SELECT start, "end", caption FROM {SEGMENTS_TABLE} WHERE item_id = ? '
                                "ORDER BY idx", [item_id]).fetchall()
            if [(round(a, 3), round(b, 3), norm(c or "")) for a, b, c in stored] == wanted:
                return item_id
        return None
