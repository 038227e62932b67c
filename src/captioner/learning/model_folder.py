"""A learned model as a normal model folder: config.json, vocab.json, decoding.json and
decoder.safetensors (`CaptionModel.save`), the base folder's optional files carried over (new words, tag
reliability, support head, retrieval's query projection, ...; the confidence calibration too, unless it
was refitted on the user's held-out edits: `learning.calibration`), a model card (README.md) and
learned.json (where it came from, its held-out figures, whether and why the calibration was refitted).
`Captioner.load(folder)` and `--model folder` load it like any other.

Learned models of a gallery live in its `models/` folder; `list_models` lists them, `new_model_dir` names
the folder of the next one and `model_choice` maps a listed model's name back to its folder (the studio's
model picker: the browser sends a name, never a path).
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from captioner.atomic_write import write_atomic
from captioner.errors import CaptionerError

if TYPE_CHECKING:  # torch: the studio's model picker lists learned models without it
    from captioner.model.folder import CaptionModel

MODELS_DIR = "models"
#: a run's work folder inside its model folder (checkpoint, encoded photos): removed when the model is written
WORK_DIR = ".learning"
LEARNED_FILE = "learned.json"
#: files of a model folder that a learned model writes itself (or that describe only the base model)
OWN_FILES = {"config.json", "vocab.json", "decoding.json", "decoder.safetensors", "README.md", LEARNED_FILE,
             "metrics_test.json", "training_log.csv", "examples.json", "__init__.py"}
#: the ONNX runtime's files: the learned model writes its own (`write_runtime`), never the base's
RUNTIME_NAMES = {"encoder.onnx", "decoder_step.onnx", "checksums.json"}
OWN_SUFFIXES = (".png", ".pyc")


def carried_files(base: Path) -> list[Path]:
    """The base model folder's optional files that the learned model keeps (its encoder stays the same)."""
    return sorted(p for p in base.iterdir() if p.is_file() and p.name not in OWN_FILES
                  and not p.name.startswith(".") and not p.name.endswith(OWN_SUFFIXES))


def model_card(info: dict) -> str:
    held = info.get("held_out")
    lines = [f"# {info['name']}", "",
             f"Learned by `captioner learn` on {info['date']} from {info['edits']} of the user's edited captions "
             f"({info['source']}), starting from the model `{info['base_name']}`.", "",
             f"- edits learned from: {info['trained_on']}; held out: {held['held_out_edits'] if held else 0}",
             f"- new words: {', '.join(info['new_words']) if info['new_words'] else 'none'}",
             f"- settings: {json.dumps(info['settings'])}"]
    if held:
        lines += [f"- held-out edits: CIDEr-D against the user's captions {held['cider_before']:.1f} (base) -> "
                  f"{held['cider_after']:.1f} (learned); captions changed on {100 * held['changed_share']:.0f}% "
                  f"of those photos; measured on {held.get('measured_on', 'the written model')}"]
    else:
        lines += ["- not measured: fewer edits than needed to hold some out"]
    conf = info.get("confidence") or {}
    if conf.get("refitted"):
        lines += [f"- confidence calibration: the base model's, {conf['why']} (confidence.json)"]
    else:
        lines += [f"- confidence calibration: the base model's, kept ({conf.get('why', 'not refitted')})"]
    lines += ["", "Its encoder is the base model's: features stored for the base model serve it too. The "
              "grounding files (new words, tag reliability, support head) are the base model's, carried over. "
              "Its ONNX runtime, where the base had one, is its own (written for its new decoder weights).", ""]
    return "\n".join(lines)


def write_runtime(model: CaptionModel, base: Path, folder: Path, log=None) -> bool:
    """Give the learned model its own ONNX runtime (`encoder.onnx`, `decoder_step.onnx` and `checksums.json`
    for its new decoder weights; `captioner.runtime.folder_export`) when its base carries one, so it is
    captioned without PyTorch as the base is. False (with one line to `log`) where it cannot be written:
    the learned model then takes the PyTorch path."""
    if not (base / "encoder.onnx").is_file():
        return False
    from captioner.model.folder import load_model
    from captioner.runtime.folder_export import write_runtime as export

    try:
        model.encoder = load_model(base, with_encoder=True).encoder  # the base's encoder, unchanged
        export(model, folder)
        return True
    except Exception as exc:  # noqa: BLE001 - the model is good without it: say so and go on
        if log:
            log(f"note: no ONNX runtime written for the learned model ({type(exc).__name__}: {exc}); it is "
                "captioned with PyTorch")
        return False
    finally:
        model.encoder = None


def write_model_folder(model: CaptionModel, base: Path, out: Path, info: dict, log=None, calibration=None) -> None:
    """Write the learned model into `out`, the files staged in out/.staging and moved in with config.json
    last (a folder with config.json is always complete). The base's ONNX runtime is never carried over (its
    checksums name the base's decoder weights): the learned model gets its own (`write_runtime`).
    `calibration`: a refitted `ConfidenceScorer`, written over the base's confidence.json (None: the base's
    is carried over)."""
    staging = out / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    model.save(staging)
    write_runtime(model, base, staging, log)
    for p in carried_files(base):
        if p.name not in RUNTIME_NAMES:
            shutil.copy2(p, staging / p.name)
    if calibration is not None:
        calibration.save(staging)
    write_atomic(staging / LEARNED_FILE, json.dumps(info, indent=2) + "\n")
    write_atomic(staging / "README.md", model_card(info))
    names = sorted(p.name for p in staging.iterdir() if p.name != "config.json") + ["config.json"]
    for name in names:
        (staging / name).replace(out / name)
    staging.rmdir()


def read_learned(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / LEARNED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def new_model_dir(gallery: str | Path, unfinished_ok: bool = True) -> Path:
    """GALLERY/models/: an unfinished run's folder (so a rerun resumes it; with `unfinished_ok`), else a new
    dated one (`learned-YYYYMMDD-HHMMSS`, a suffix added when that name is taken)."""
    root = Path(gallery).expanduser() / MODELS_DIR
    if unfinished_ok and root.is_dir():
        unfinished = sorted(p for p in root.iterdir() if (p / WORK_DIR).is_dir() and not (p / "config.json").exists())
        if unfinished:
            return unfinished[-1]
    stem = datetime.now(timezone.utc).strftime("learned-%Y%m%d-%H%M%S")
    out, n = root / stem, 1
    while out.exists():
        n += 1
        out = root / f"{stem}-{n}"
    return out


def model_choice(gallery: str | Path, name: str) -> Path:
    """The folder of the learned model listed as `name` (its folder's name) in `gallery/models/`;
    CaptionerError for any name `list_models` does not list (a path, `..`, a deleted model)."""
    for m in list_models(gallery):
        if m["id"] == name:
            return Path(m["path"])
    raise CaptionerError(f"no learned model called {str(name)[:80]!r} in this gallery "
                         "(`captioner models` lists them)")


def describe(m: dict) -> str:
    """One line for a listed model: date, edits, held-out figures."""
    held = m.get("held_out")
    figures = (f"held-out CIDEr-D {held['cider_before']:.1f} -> {held['cider_after']:.1f} on {held['held_out_edits']} "
               f"edits, captions changed on {100 * held['changed_share']:.0f}%" if held
               else "not measured (too few edits to hold some out)")
    date = (m.get("date") or "?").replace("T", " ").replace("Z", " UTC")
    return f"learned {date} from {m.get('edits') or '?'} edits; {figures}"


def list_models(gallery: str | Path) -> list[dict]:
    """The model folders in `gallery/models/`, oldest first: {"id" (the folder's name), "path", "name",
    "date", "edits", "trained_on", "held_out", "new_words", "base_name"} (None where a folder has no
    learned.json)."""
    root = Path(gallery).expanduser() / MODELS_DIR
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()):
        info = read_learned(folder) or {}
        try:
            name = json.loads((folder / "config.json").read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            name = None
        out.append({"id": folder.name, "path": str(folder), "name": name, "date": info.get("date"),
                    "edits": info.get("edits"), "trained_on": info.get("trained_on"),
                    "held_out": info.get("held_out"), "new_words": info.get("new_words", []),
                    "base_name": info.get("base_name")})
    return sorted(out, key=lambda m: (m["date"] or "", m["path"]))
