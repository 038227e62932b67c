"""Memory per browser session (issue 11, item 4): the studio's size must not grow with sessions.

80 new browser sessions at beam 10 grew the studio from 1.0 to 2.1 GB, never released: every
session kept the HTML of its candidate cards (the attention animations as data URIs,
megabytes each), once in the session state and once in Gradio's per-session copy of the last
value of every component.  Here a real studio process serves 100 new sessions, each doing what
a browser tab does when a photo is captioned (upload, /caption, then the events chained after
it: drawing the cards...), and its resident size (VmRSS) must stay within 150 MB of what it was
after a warm-up.
"""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from oracles.photos import FLICKR
from test_studio_security import StudioProcess, call, dependencies, file_data, make_photo, upload

FLICKR_IMAGES = FLICKR / "images"
WARM_UP = 10
SESSIONS = 100
MAX_GROWTH_MB = 150
BEAM, MAX_WORDS = 5, 8  # ~1 s a session with the tiny model; ~1.5 MB of cards HTML each


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def browser_session(client: httpx.Client, config: dict, caption_fn: int, photo: Path) -> None:
    """One new tab: upload a photo, press Caption, and run what the page runs after it."""
    session = uuid.uuid4().hex[:11]
    r = upload(client, photo, {"Origin": str(client.base_url).rstrip("/")})
    r.raise_for_status()
    deps = {d["id"]: d for d in config["dependencies"]}
    # /caption's inputs: the photos, beam, length, "Add to the list", the session's list (a State: null)
    todo = [(caption_fn, [[file_data(r.json()[0], photo.name)], BEAM, MAX_WORDS, False, None])]
    while todo:
        fn, data = todo.pop(0)
        if deps[fn].get("queue") is False:
            r = client.post("/gradio_api/run/predict", json={"data": data, "fn_index": fn, "session_hash": session,
                                                             "event_data": None, "trigger_id": None})
            assert r.status_code == 200, r.text
        else:
            msg = call(client, fn, data, session)
            assert msg["success"], msg
        # the events chained with .then() after this one; their inputs here are the session's
        # state (the browser's values of visible components do not change the memory kept)
        todo += [(d["id"], [None] * len(d["inputs"])) for d in deps.values() if d.get("trigger_after") == fn]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
def test_memory_stays_flat_over_100_new_sessions(tiny_model_dir, tmp_path):
    if FLICKR_IMAGES.is_dir():
        photos = sorted(FLICKR_IMAGES.glob("*.jpg"))[:10]
    else:
        photos = [make_photo(tmp_path / f"p{i}.jpg", color=(20 * i, 100, 50)) for i in range(10)]
    studio = StudioProcess(tiny_model_dir, tmp_path / "studio").wait()
    try:
        config = studio.config()
        (caption_fn,) = dependencies(config, name="caption")
        start = time.monotonic()
        with httpx.Client(base_url=studio.url, timeout=120) as client:
            for i in range(WARM_UP):
                browser_session(client, config, caption_fn, photos[i % len(photos)])
            before = rss_mb(studio.proc.pid)
            sizes = []
            for i in range(SESSIONS):
                browser_session(client, config, caption_fn, photos[i % len(photos)])
                if i % 10 == 9:
                    sizes.append(round(rss_mb(studio.proc.pid)))
        after = rss_mb(studio.proc.pid)
        print(f"\nRSS after {WARM_UP} warm-up sessions {before:.0f} MB; every 10 sessions: {sizes}; "
              f"after {SESSIONS} more {after:.0f} MB ({time.monotonic() - start:.0f} s)")
        assert after - before < MAX_GROWTH_MB, (before, sizes, after)
    finally:
        studio.stop()


# ---------------------------------------------------------------------------- the session store (fast)
@pytest.fixture(scope="module")
def mounted(tiny_model_dir, tmp_path_factory):
    """A studio app made as `launch` makes it (not served), with its Studio."""
    from captioner.pipeline import Captioner
    from captioner.storage import Gallery
    from captioner.studio.app import Studio, host_policy, make_app

    studio = Studio(Captioner.load(tiny_model_dir), Gallery(tmp_path_factory.mktemp("mem-gallery")))
    demo = studio.build()
    make_app(demo, host_policy("127.0.0.1", False))
    return studio, demo


def test_gradio_has_the_session_store_the_studio_trims(mounted):
    """sessions.py reaches into Gradio's session store: fail loudly if an upgrade changes it."""
    from captioner.studio import sessions

    studio, demo = mounted
    assert sessions.supported(demo)
    assert demo.state_session_capacity == sessions.MAX_SESSIONS
    assert demo.has_launched is True  # Gradio's own upload-folder check is on (see make_app)
    states = [b for b in demo.blocks.values() if type(b).__name__ == "State"]
    assert states and all(0 < b.time_to_live <= sessions.SESSION_TTL_S for b in states)


def test_rendered_html_is_forgotten_after_it_is_sent(mounted):
    from captioner.studio import sessions

    studio, demo = mounted
    holder = demo.state_holder
    session = holder["memory-test-1"]
    assert studio._heavy_ids
    for cid in studio._heavy_ids:
        session._update_value_in_config(cid, "<div>" + "x" * 100_000 + "</div>")
    assert sessions.forget_values(demo, "memory-test-1", studio._heavy_ids) == len(studio._heavy_ids)
    assert all(session.config_values[cid]["props"]["value"] is None for cid in studio._heavy_ids)
    assert sessions.forget_values(demo, "no-such-session", studio._heavy_ids) == 0
    assert sessions.forget_values(object(), "memory-test-1", studio._heavy_ids) == 0


def test_idle_sessions_are_dropped(mounted):
    import datetime

    from captioner.studio import sessions

    studio, demo = mounted
    holder = demo.state_holder
    deleted = []
    for sid in ("idle-1", "busy-1"):
        session = holder[sid]
        state_block = next(b for b in demo.blocks.values() if type(b).__name__ == "State")
        session[state_block._id] = {"photos": ["something big"]}
    state_block.delete_callback = lambda value: deleted.append(value)
    holder.time_last_used["idle-1"] = datetime.datetime.now() - datetime.timedelta(hours=2)
    assert sessions.drop_idle(demo, 3600) == 1
    assert "idle-1" not in holder.session_data and "idle-1" not in holder.time_last_used
    assert "busy-1" in holder.session_data
    assert deleted == [{"photos": ["something big"]}]
    sessions.release_free_memory()  # a no-op where there is no malloc_trim; never raises
    assert sessions.drop_idle(object(), 1) == 0
