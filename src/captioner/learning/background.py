"""Learning from a gallery's edits in the background (the studio's "Learn from my edits"): one run at a
time, in a thread, with its stage and progress readable at any moment, ending in the learned model's
held-out figures or the reason nothing was written.

The learned model goes into a new folder of the gallery's `models/` (never over the model it started
from, nor over another learned one); using it is a separate step (`model_choice`, the studio's picker).
"""
from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from captioner.errors import CaptionerError
from captioner.learning.config import LearnConfig

#: what each stage of `learn` is called for the user
STAGES = {"reading": "reading your edits", "encoding": "encoding photos without stored features",
          "learning": "learning", "checking": "checking the new model on the held-out edits",
          "relearning": "learning again from all your edits"}


def count_edits(gallery) -> int:
    """How many of the gallery's live photos have a caption the user edited (more than case or punctuation):
    what `learn` would learn from."""
    from captioner.learning.edits import edits_from_gallery

    return len(edits_from_gallery(gallery)[0])


@dataclass
class JobStatus:
    """A snapshot of the background run. `state`: idle, running, done (a model was written), refused
    (worse on the held-out edits: nothing written) or failed (too few edits, a bad photo...)."""

    state: str = "idle"
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    report: dict | None = None
    model_id: str | None = None
    left_out: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class LearnJob:
    """One background `learn` from a gallery at a time. `start` returns at once; `status()` says how far
    it is; `wait()` blocks until it ends (tests, scripts)."""

    def __init__(self, gallery, base_dir: str | Path | None = None, cfg: LearnConfig | None = None):
        self.gallery, self.base_dir, self.cfg = gallery, base_dir, cfg or LearnConfig()
        self._lock = threading.Lock()
        self._status = JobStatus()
        self._thread: threading.Thread | None = None

    def status(self) -> JobStatus:
        with self._lock:
            s = self._status
            return JobStatus(s.state, s.stage, s.done, s.total, s.message, s.started, s.finished, s.report,
                             s.model_id, list(s.left_out))

    def _set(self, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._status, k, v)

    def start(self) -> JobStatus:
        """Start learning from the gallery's edits; CaptionerError when a run is going on already or the
        gallery cannot take a model (read-only)."""
        if getattr(self.gallery, "read_only", False):
            raise CaptionerError(f"the gallery at {self.gallery.folder} is read-only: a learned model could not "
                                 "be stored in it")
        with self._lock:
            if self._status.state == "running":
                raise CaptionerError("learning is already running; wait for it to finish")
            self._status = JobStatus(state="running", stage="reading", message=STAGES["reading"],
                                     started=time.time())
        self._thread = threading.Thread(target=self._run, name="captioner-learn", daemon=True)
        self._thread.start()
        return self.status()

    def wait(self, timeout: float | None = None) -> JobStatus:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status()

    def _progress(self, stage: str, done: int, total: int) -> None:
        self._set(stage=stage, done=done, total=total, message=STAGES.get(stage, stage))

    def _run(self) -> None:
        from captioner.learning.edits import edits_from_gallery
        from captioner.learning.model_folder import new_model_dir
        from captioner.learning.run import LearnRefused, feature_model_names, learn
        from captioner.model.folder import default_model_dir, load_model

        left_out: list[str] = []
        out = None
        try:
            base_dir = Path(self.base_dir) if self.base_dir else default_model_dir()
            base = load_model(base_dir, with_encoder=False)
            edits, anchors = edits_from_gallery(self.gallery, feature_model_names(base_dir, base))
            del base
            out = new_model_dir(self.gallery.folder, unfinished_ok=False)
            report = learn(edits, out, self.cfg, base_dir=base_dir, anchors=anchors,
                           source=f"gallery {self.gallery.folder}", progress=self._progress, log=left_out.append)
        except LearnRefused as exc:
            self._set(state="refused", message=str(exc), finished=time.time(), left_out=left_out)
        except Exception as exc:  # noqa: BLE001 - the thread must end with a state the page can show
            why = str(exc) if isinstance(exc, CaptionerError) else f"{type(exc).__name__}: {exc}"
            if out is not None and out.is_dir() and not (out / "config.json").exists():
                shutil.rmtree(out, ignore_errors=True)  # the studio starts afresh each time: no half run kept
            self._set(state="failed", message=why, finished=time.time(), left_out=left_out)
        else:
            self._set(state="done", stage="", message="", finished=time.time(), report=report.to_dict(),
                      model_id=Path(report.out).name, left_out=report.left_out)
