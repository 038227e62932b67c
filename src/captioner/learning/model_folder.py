"""A learned model as a normal model folder: config.json, vocab.json, decoding.json and
decoder.safetensors (`CaptionModel.save`), the base folder's optional files carried over (confidence
calibration, new words, tag reliability, retrieval's query projection, ...), a model card (README.md)
and learned.json (where it came from and its held-out figures). `Captioner.load(folder)` and
`--model folder` load it like any other.

Learned models of a gallery live in its `models/` folder; `list_models` lists them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from captioner.model.folder import CaptionModel

MODELS_DIR = "models"
LEARNED_FILE = "learned.json"
#: files of a model folder that a learned model writes itself (or that describe only the base model)
OWN_FILES = {"config.json", "vocab.json", "decoding.json", "decoder.safetensors", "README.md", LEARNED_FILE,
             "metrics_test.json", "training_log.csv", "examples.json", "__init__.py",
             "decoder_step.onnx"}  # reads the base's decoder weights; encoder.onnx and checksums.json still hold
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
                  "of those photos"]
    else:
        lines += ["- not measured: fewer edits than needed to hold some out"]
    lines += ["", "Its encoder is the base model's: features stored for the base model serve it too. The "
              "confidence calibration and the grounding files are the base model's, carried over (not refitted).", ""]
    return "\n".join(lines)


def write_model_folder(model: CaptionModel, base: Path, out: Path, info: dict) -> None:
    """Write the learned model into `out`, the files staged in out/.staging and moved in with config.json
    last (a folder with config.json is always complete)."""
    staging = out / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    model.save(staging)
    for p in carried_files(base):
        shutil.copy2(p, staging / p.name)
    (staging / LEARNED_FILE).write_text(json.dumps(info, indent=2) + "\n")
    (staging / "README.md").write_text(model_card(info))
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


def list_models(gallery: str | Path) -> list[dict]:
    """The model folders in `gallery/models/`, oldest first: {"path", "name", "date", "edits",
    "held_out"} (None where a folder has no learned.json)."""
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
        out.append({"path": str(folder), "name": name, "date": info.get("date"), "edits": info.get("edits"),
                    "held_out": info.get("held_out"), "new_words": info.get("new_words", [])})
    return sorted(out, key=lambda m: (m["date"] or "", m["path"]))
