"""Output files of `captioner caption --out FILE`: JSON Lines (.jsonl) or CSV (.csv), appended to and
resumable (a video's subtitles, .vtt / .srt, are written by `captioner.video.subtitles`; any other suffix is
refused, so `--out x.txt` cannot silently hold JSON Lines).

- Only complete records count as done: an incomplete last line (power loss, a full disk) is cut
  off before appending, so it can neither stay invalid forever nor mark its photo as done.
- Records are flushed and fsynced in batches (`commit`); a write that fails (a full disk) rolls
  the file back to the last committed batch and ends with one clear error, so a re-run resumes.
- `-` means standard output (nothing to resume).
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
from pathlib import Path

from captioner.errors import CaptionerError

CSV_HEADER = ["image", "caption", "score", "normalized_score", "candidates", "error"]


class OutputFileError(CaptionerError):
    """The output file cannot be used or written."""


def check_output_path(path: str) -> None:
    """Refuse, before any work, an output that is a folder, not a regular file, or not writable."""
    if path == "-":
        return
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        parent = p.parent if str(p.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            raise OutputFileError(f"--out {path}: {parent} is not a folder") from None
        probe = parent
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            raise OutputFileError(f"--out {path}: cannot create it, {probe} is not writable") from None
        return
    except OSError as exc:
        raise OutputFileError(f"--out {path}: cannot use it ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputFileError(f"--out {path}: is a folder; give a file name such as {Path(path) / 'captions.jsonl'}")
    if not stat.S_ISREG(st.st_mode):
        raise OutputFileError(f"--out {path}: not a regular file (a device, FIFO or socket); give a .jsonl or .csv "
                              "file, or - for standard output")
    if not os.access(p, os.W_OK):
        raise OutputFileError(f"--out {path}: the file is not writable")


#: What `caption --out` writes, by suffix (case aside); anything else is refused before any work.
OUTPUT_SUFFIXES = {".jsonl": "JSON Lines", ".csv": "CSV", ".vtt": "WebVTT subtitles", ".srt": "SubRip subtitles"}


def check_output_suffix(path: str) -> None:
    """Refuse an --out name whose suffix does not say what is written (``x.txt``, ``x.json``, no suffix)."""
    if path == "-":
        return
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise OutputFileError(f"--out {path}: {shown} does not say what is written; name it .jsonl (JSON Lines), .csv, "
                              ".vtt or .srt (a video's subtitles), or give - for JSON Lines on standard output")


def _complete_bytes(path: Path) -> int:
    """The size of the file up to and including its last newline (0 when it has none)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                return pos - step + nl + 1
            pos -= step
    return 0


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _complete_lines(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return f.read(_complete_bytes(path)).decode("utf-8", errors="replace").splitlines()


def read_done_videos(path: Path) -> set[str]:
    """Videos whose every segment has a complete, successful record in an earlier --out .jsonl (a video
    cut off after some of its segments is captioned again)."""
    if not path.exists() or _is_csv(path):
        return set()
    seen: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for line in _complete_lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("video") and not rec.get("error") and rec.get("caption") \
                and isinstance(rec.get("segment"), int) and isinstance(rec.get("segments"), int):
            seen.setdefault(rec["video"], set()).add(rec["segment"])
            counts[rec["video"]] = rec["segments"]
    return {v for v, got in seen.items() if got == set(range(counts[v]))}


def read_done(path: Path) -> set[str]:
    """Images with a complete, successful record in an earlier output file (the incomplete last line ignored)."""
    if not path.exists():
        return set()
    lines = _complete_lines(path)
    done = set()
    if _is_csv(path):
        rows = list(csv.reader(io.StringIO("\n".join(lines), newline="")))
        for row in rows[1:] if rows and rows[0] == CSV_HEADER else rows:
            if len(row) == len(CSV_HEADER) and row[0] and not row[-1]:
                done.add(row[0])
        return done
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("image") and not rec.get("error") and rec.get("candidates"):
            done.add(rec["image"])
    return done


def already_done(out_path: Path) -> set[str]:
    return read_done(Path(out_path))


class ResultsFile:
    """Appends `CaptionResult`s to `path` (see the module docstring); use as a context manager."""

    def __init__(self, path: str):
        self.name = path
        self.stdout = path == "-"
        self.csv = not self.stdout and _is_csv(Path(path))
        self.dropped_partial = False
        self.pending = 0
        self.written = 0
        if self.stdout:
            self.f = sys.stdout
            self.good_size = 0
            return
        p = Path(path)
        check_output_path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(p, "a+b", buffering=0)  # unbuffered: a failed write can be rolled back
            size = self.f.seek(0, os.SEEK_END)
            keep = _complete_bytes(p) if size else 0
            if keep != size:  # an interrupted run left half a line: cut it off
                self.f.truncate(keep)
                self.dropped_partial = True
            self.good_size = keep
            if self.csv and keep == 0:
                self._write_bytes(self._csv_line(CSV_HEADER))
                self.commit()
        except OSError as exc:
            raise OutputFileError(f"--out {path}: cannot open it for writing ({exc.strerror or exc})") from None

    @staticmethod
    def _csv_line(row: list) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        return buf.getvalue().encode("utf-8")

    def _record(self, r) -> bytes:
        if not self.csv:
            return (json.dumps(r.to_dict()) + "\n").encode("utf-8")
        best = r.candidates[0] if r.candidates else None
        return self._csv_line([r.image, best.caption if best else "", f"{best.score:.6f}" if best else "",
                               f"{best.normalized_score:.6f}" if best else "",
                               json.dumps([c.caption for c in r.candidates]), r.error or ""])

    def _write_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self.f.write(view):]
        except OSError as exc:
            self._fail(exc)

    def write(self, result) -> None:
        if self.stdout:
            print(json.dumps(result.to_dict()), flush=True)
            return
        self._write_bytes(self._record(result))
        self.pending += 1

    def commit(self) -> None:
        """Flush and fsync what was written since the last commit."""
        if self.stdout:
            return
        try:
            os.fsync(self.f.fileno())
        except OSError as exc:
            self._fail(exc)
        self.good_size = os.fstat(self.f.fileno()).st_size
        self.written += self.pending
        self.pending = 0

    def _fail(self, exc: OSError):
        """Roll back to the last committed batch, then raise one clear error."""
        try:
            os.ftruncate(self.f.fileno(), self.good_size)
        except OSError:
            pass
        reason = "the disk is full" if exc.errno == 28 else (exc.strerror or str(exc))
        raise OutputFileError(f"--out {self.name}: could not write ({reason}); it keeps the complete records "
                              "written before, and running the same command again resumes from there") from None

    def close(self) -> None:
        if self.stdout:
            return
        try:
            self.commit()
        finally:
            try:
                self.f.close()
            except OSError:
                pass

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
