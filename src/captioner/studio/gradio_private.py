"""The studio's uses of Gradio's private parts, in one place (Gradio has no public API for them).

* A component's id (``Block._id``): how Gradio keys a session's State values and stored config values.
* An event's data (``EventData._data``): the payload a ``gr.HTML`` component sends with ``trigger(...)``;
  Gradio exposes its keys as attributes, but reading one that is not there raises ``TypeError`` rather
  than ``AttributeError`` when the payload is not a dict.
* Gradio's session store (``Blocks.state_holder``, set when the app is mounted) and a session's State
  values in it: the Caption tab's own route for one photo (`photos_tab.PhotosTab.caption_direct`) runs
  outside Gradio's events and reads and writes the session's list of photos there; `sessions` drops
  idle sessions and the stored copies of big values from it: the store's ``session_data``,
  ``time_last_used``, ``lock`` and ``delete_state``, and a session's ``config_values``.
* ``Blocks.state_session_capacity``: how many sessions Gradio keeps (read when the app is mounted).
* ``Blocks.has_launched``: Gradio checks that file inputs are its own uploads only in an app it launched.
* ``gradio.utils.get_upload_folder``: where Gradio stores uploads.

tests/test_gradio_private.py checks each of these against the installed Gradio, so an upgrade that
changes one fails there, by name; pyproject.toml pins the Gradio major version that is tested.
"""
from __future__ import annotations

import datetime
import os
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any


def component_id(block) -> int:
    """Gradio's id of a component (a ``gr.State`` or any other block)."""
    return block._id


def event_data(evt) -> dict:
    """The data an event carries (a ``gr.HTML`` component's ``trigger(name, data)``): a dict, or {} when
    the event carries none or something else."""
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


def session_store(blocks):
    """Gradio's session store of ``blocks`` (None where this Gradio has none)."""
    return getattr(blocks, "state_holder", None)


def live_session(blocks, session_hash: str | None):
    """The State values of the browser session ``session_hash`` (None when Gradio holds no such session)."""
    store = session_store(blocks)
    if store is None or not session_hash or session_hash not in store:
        return None
    return store[session_hash]


def state_value(session, state) -> Any:
    """The value the ``gr.State`` ``state`` has in ``session`` (from `live_session`)."""
    return session[component_id(state)]


def set_state_value(session, state, value: Any) -> None:
    """Give the ``gr.State`` ``state`` the value ``value`` in ``session`` (from `live_session`)."""
    session[component_id(state)] = value


def set_session_capacity(blocks, sessions: int) -> None:
    """Let Gradio hold at most ``sessions`` browser sessions (set before the app is mounted)."""
    blocks.state_session_capacity = sessions


def mark_launched(blocks) -> None:
    """Say ``blocks`` was launched, so Gradio checks that file inputs are its own uploads in a mounted app too."""
    blocks.has_launched = True


def upload_folder() -> Path:
    """Where Gradio stores uploads (``GRADIO_TEMP_DIR``, else <temp>/gradio)."""
    try:
        from gradio.utils import get_upload_folder
        folder = get_upload_folder()
    except Exception:  # noqa: BLE001 - an older or newer Gradio: the documented default
        folder = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(folder).resolve()


def store_supported(store) -> bool:
    """Whether ``store`` (from `session_store`) is the kind of session store the functions below work with."""
    return (store is not None and isinstance(getattr(store, "session_data", None), dict)
            and isinstance(getattr(store, "time_last_used", None), dict) and hasattr(store, "lock")
            and hasattr(store, "delete_state"))


def stored_config_values(store, session_hash: str) -> dict | None:
    """The stored copies of the components' values of session ``session_hash`` ({id: {"props": {...}}})."""
    session = store.session_data.get(session_hash)
    values = getattr(session, "config_values", None)
    return values if isinstance(values, dict) else None


def last_used(store) -> dict[str, datetime.datetime]:
    """When each session was last used (a copy)."""
    return dict(store.time_last_used)


def store_lock(store) -> AbstractContextManager:
    return store.lock


def delete_session_state(store, session_hash: str) -> None:
    """Run the State delete callbacks of session ``session_hash``."""
    store.delete_state(session_hash)


def forget_session(store, session_hash: str) -> None:
    """Drop session ``session_hash`` from the store (call with `store_lock` held)."""
    store.session_data.pop(session_hash, None)
    store.time_last_used.pop(session_hash, None)


def session_last_used(store, session_hash: str) -> datetime.datetime | None:
    return store.time_last_used.get(session_hash)
