"""A model folder carries its own ONNX runtime: `encoder.onnx` (the CNN encoder, with its weights) and
`decoder_step.onnx` (one beam-search step; about 8 KB: it reads its weights from the folder's own
`decoder.safetensors`, see `captioner.runtime.external_weights`), with `checksums.json` listing the sha256
of those files and of the weights they were made from (`captioner.runtime.checksums`).

`captioner.runtime.folder_export.write_runtime(model, folder)` writes them (`scripts/ship_model.py`,
`CaptionModel.save(runtime=True)`).
`CaptionModel.load` marks the encoder and decoder it loads with their folder (`mark_loaded`);
`runtime_file(module, name)` then gives the folder's file for that module when the folder has one, its
checksums match, the settings it was made for are the module's, and the module's weights have not
changed in memory since they were loaded (their version counters); else None, and the caller uses the
per-machine export cache (`captioner.runtime.onnx_runtime`). So a folder's runtime needs neither an
export nor hashing the weights at start-up, and it is the same file on every machine.

Importing this module imports neither torch nor onnx.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from captioner.runtime.checksums import mismatches, read_checksums

ENCODER_FILE = "encoder.onnx"
STEP_FILE = "decoder_step.onnx"
RUNTIME_FILES = (ENCODER_FILE, STEP_FILE)
_ATTR = "_captioner_folder"
_warned: set[tuple[str, str]] = set()


# ---------------------------------------------------------------------------- which module came from where
def signature(module) -> tuple:
    """What changes when a module's weights change in memory: each tensor's name, shape, dtype and version
    counter (bumped by every in-place change: an optimizer step, `load_state_dict`, `add_`)."""
    return tuple((name, tuple(t.shape), str(t.dtype), t._version)
                 for name, t in module.state_dict(keep_vars=True).items())


def mark_loaded(model, folder: str | os.PathLike) -> None:
    """Remember that `model`'s encoder and decoder hold the weights of `folder` (call right after loading)."""
    folder = Path(folder)
    for module in (model.encoder, model.decoder):
        if module is not None:
            object.__setattr__(module, _ATTR, (folder, signature(module)))


def loaded_from(module) -> Path | None:
    """The folder `module`'s weights were loaded from, when they have not changed since; else None."""
    source = getattr(module, _ATTR, None)
    if not source:
        return None
    folder, sig = source
    return folder if sig == signature(module) else None


def runtime_file(module, name: str, **expect) -> Path | None:
    """The model folder's runtime file `name` for `module` (see the module docstring), or None. `expect`:
    settings the file must have been made for (e.g. `input_size=224`)."""
    folder = loaded_from(module)
    if folder is None:
        return None
    listed = read_checksums(folder)
    entry = (listed or {}).get("runtime", {}).get(name)
    if not isinstance(entry, dict):
        return None
    if any(entry.get(k) != v for k, v in expect.items()) or not (folder / name).is_file():
        return None  # made for other settings, or not carried (e.g. a learned model keeps only the encoder's)
    bad = mismatches(folder, [name, *entry.get("needs", [])], listed["files"])
    if bad:
        if (str(folder), name) not in _warned:
            _warned.add((str(folder), name))
            warnings.warn(f"{folder}: {', '.join(bad)} differ from checksums.json, so its {name} is not used "
                          "(the per-machine ONNX export is); `python scripts/ship_model.py` writes them again",
                          RuntimeWarning, stacklevel=3)
        return None
    return folder / name
