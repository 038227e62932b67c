"""What every studio tab shares: limits, the checks of event values, and the error wrapper.

Event values come from the browser: each one is checked here (a number that is an index into the
session's own list, a file that Gradio received) before a tab uses it.
"""
from __future__ import annotations

import functools
import html
import logging
import os
import re
from pathlib import Path
from typing import Any

import gradio as gr

from captioner.errors import CaptionerError
from captioner.storage import GalleryError
from captioner.studio import sessions

log = logging.getLogger("captioner.studio")

#: Most photos one /caption call takes (and so one session keeps).
MAX_PHOTOS = 24
#: Longest caption text /save stores.
MAX_CAPTION_CHARS = 500
#: How long a browser tab's (or a script's) last caption result is kept for saving (seconds,
#: from the /caption that made it); a session idle that long is dropped whole.
SESSION_TTL_S = sessions.SESSION_TTL_S
#: A content hash as the gallery writes it.
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def user_errors(fn):
    """Turn any unexpected exception into a short readable message (the traceback goes to the log)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (CaptionerError, GalleryError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence before the browser
            log.exception("studio: %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). "
                           "Details are in the studio's console.", print_exception=False) from None
    return wrapper


def int_value(value: Any, lo: int, hi: int, default: int) -> int:
    try:
        return max(lo, min(hi, int(round(float(value)))))
    except (TypeError, ValueError):
        return default


def file_paths(files: Any) -> list[str]:
    """File component value(s) -> list of paths."""
    if not files:
        return []
    if not isinstance(files, (list, tuple)):
        files = [files]
    out = []
    for f in files:
        path = f if isinstance(f, (str, os.PathLike)) else getattr(f, "path", None) or getattr(f, "name", None)
        if path:
            out.append(str(path))
    return out


def upload_folder() -> Path:
    """Where Gradio stores uploads (``GRADIO_TEMP_DIR``, else <temp>/gradio)."""
    from captioner.studio import gradio_private

    return gradio_private.upload_folder()


def is_inside(path: str, folder: Path) -> bool:
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError):
        return False
    return resolved.is_relative_to(folder) and resolved != folder


def readable_error(message: str, path: str, name: str) -> str:
    """Engine messages name the upload's temporary path; show the user's file name instead."""
    return message.replace(path, name) if message else message



def own_attention(candidate):
    """The candidate with an attention array of its own (not a view keeping the batch's bigger buffer alive):
    a torch tensor's clone, or a numpy view's copy (the torch-free engine's maps are views of its search's)."""
    attention = getattr(candidate, "attention", None)
    if attention is not None and hasattr(attention, "clone"):
        candidate.attention = attention.detach().clone()
    elif getattr(attention, "base", None) is not None and hasattr(attention, "copy"):
        candidate.attention = attention.copy()
    return candidate


def session_photos(state: Any) -> list:
    photos = state.get("photos") if isinstance(state, dict) else None
    return photos if isinstance(photos, list) else []


def is_whole_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == value and float(value).is_integer()
    try:
        return float(str(value)).is_integer()
    except ValueError:
        return False


def index_in(value: Any, length: int) -> int | None:
    """``value`` as an index into a list of ``length`` items, or None (no negative indexes, no guessing)."""
    if not is_whole_number(value):
        return None
    i = int(float(value))
    return i if 0 <= i < length else None


def save_message(result: dict | None) -> str:
    if not isinstance(result, dict) or not result:
        return ""
    if result.get("id") is None:
        return f"⚠️ {html.escape(str(result.get('error') or 'Not saved.'))}"
    return f"✅ {html.escape(str(result.get('message', '')))}"


def save_error(message: str) -> dict:
    gr.Warning(message)
    return {"id": None, "error": message}
