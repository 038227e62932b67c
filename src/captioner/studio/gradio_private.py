"""The studio's uses of Gradio's private parts, in one place (Gradio has no public API for them).

* A component's id (``Block._id``): how Gradio keys a session's State values and stored config values.
* An event's data (``EventData._data``): the payload a ``gr.HTML`` component sends with ``trigger(...)``;
  Gradio exposes its keys as attributes, but reading one that is not there raises ``TypeError`` rather
  than ``AttributeError`` when the payload is not a dict.
* Gradio's session store (``Blocks.state_holder``, set when the app is mounted) and a session's State
  values in it: the Caption tab's own route for one photo (`photos_tab.PhotosTab.caption_direct`) runs
  outside Gradio's events and reads and writes the session's list of photos there; `sessions` drops
  idle sessions and the stored copies of big values from it.

tests/test_gradio_private.py checks each of these against the installed Gradio, so an upgrade that
changes one fails there, by name; pyproject.toml pins the Gradio major version that is tested.
"""
from __future__ import annotations

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
