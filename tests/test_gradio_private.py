"""The Gradio internals the studio uses (`captioner.studio.gradio_private`) are there in the installed Gradio and
behave as the studio expects: a Gradio upgrade that changes one fails here, by name."""
from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from packaging.requirements import Requirement

from captioner.studio import gradio_private

ROOT = Path(__file__).resolve().parents[1]


def test_the_tested_gradio_major_is_the_one_pinned():
    pin = Requirement(re.search(r'^\s*"(gradio[^_"][^"]*)",', (ROOT / "pyproject.toml").read_text(encoding="utf-8"),
                                re.M).group(1))
    major = int(gr.__version__.split(".")[0])
    assert gr.__version__ in pin.specifier, f"gradio {gr.__version__} is not what pyproject.toml allows ({pin})"
    assert f"{major + 1}.0" not in pin.specifier, f"pyproject.toml allows an untested Gradio major ({pin})"


def test_component_ids_key_the_blocks():
    with gr.Blocks() as demo:
        state = gr.State({"photos": []})
        box = gr.Textbox()
    ids = [gradio_private.component_id(state), gradio_private.component_id(box)]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 2
    assert demo.blocks[ids[0]] is state and demo.blocks[ids[1]] is box


def test_event_data_is_the_triggered_payload():
    assert gradio_private.event_data(gr.EventData(None, {"candidate": 2})) == {"candidate": 2}
    assert gradio_private.event_data(gr.EventData(None, None)) == {}
    assert gradio_private.event_data(gr.EventData(None, ["not", "a", "dict"])) == {}
    assert gradio_private.event_data(object()) == {}


def test_a_sessions_state_values_can_be_read_and_written_outside_an_event():
    with gr.Blocks() as demo:
        state = gr.State({"photos": []})
    gr.mount_gradio_app(FastAPI(), demo, path="/")
    store = gradio_private.session_store(demo)
    assert store is not None
    assert gradio_private.live_session(demo, "abc") is None and gradio_private.live_session(demo, None) is None
    store["abc"]  # Gradio makes a session's store on its first event
    session = gradio_private.live_session(demo, "abc")
    assert session is not None
    assert gradio_private.state_value(session, state) == {"photos": []}  # the State's initial value
    gradio_private.set_state_value(session, state, {"photos": [1]})
    assert gradio_private.state_value(gradio_private.live_session(demo, "abc"), state) == {"photos": [1]}
    assert "abc" in store and gradio_private.live_session(demo, "other") is None


def test_the_session_store_internals_the_reaper_uses():
    with gr.Blocks() as demo:
        gr.State({"photos": []})
    gradio_private.set_session_capacity(demo, 7)
    gr.mount_gradio_app(FastAPI(), demo, path="/")
    store = gradio_private.session_store(demo)
    assert store.capacity == 7  # Gradio's StateHolder took the capacity given before mounting
    assert gradio_private.store_supported(store)
    store["s1"]
    store["s2"]
    used = gradio_private.last_used(store)
    assert set(used) >= {"s1", "s2"} and gradio_private.session_last_used(store, "s1") == used["s1"]
    assert gradio_private.stored_config_values(store, "s1") is not None  # Gradio keeps config values per session
    gradio_private.delete_session_state(store, "s1")
    with gradio_private.store_lock(store):
        gradio_private.forget_session(store, "s1")
    assert "s1" not in gradio_private.last_used(store) and gradio_private.live_session(demo, "s1") is None
    assert gradio_private.live_session(demo, "s2") is not None


def test_mark_launched_and_the_upload_folder(monkeypatch, tmp_path):
    with gr.Blocks() as demo:
        gr.Textbox()
    assert not demo.has_launched
    gradio_private.mark_launched(demo)
    assert demo.has_launched
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    assert gradio_private.upload_folder() == (tmp_path / "uploads").resolve()
