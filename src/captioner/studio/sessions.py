"""What a browser session may keep in the studio's memory, and for how long.

Every browser tab (and every gradio_client ``Client``) is a session.  Gradio keeps, per session:

* the values of ``gr.State`` components: here the last ``/caption`` result (what ``/save``
  needs) and the gallery page on screen.  They expire ``SESSION_TTL_S`` after they were last
  set (``gr.State(time_to_live=...)``);
* a copy of the last value sent to every output component ("config values", used only to
  rebuild a page from a deep link).  For the candidate cards and the item details that is the
  whole HTML with its attention animations: megabytes per session at beam 10, kept until the
  session is dropped, and Gradio drops sessions only beyond ``state_session_capacity`` (10,000
  by default).  `forget_values` clears those copies once they have been sent, and `Reaper`
  drops whole sessions that have been idle for ``SESSION_TTL_S``.

The studio keeps one more thing per session, outside Gradio: `Confirmations`, the one-time codes
that let a destructive event (emptying the trash, deleting an item) run only after the page asked
for it and the user said yes in that page.

`forget_values` and `Reaper` use Gradio's session store (`gradio_private.session_store`), which is not a public
API; `supported` says whether this Gradio has the attributes they need (a test checks it, so an
upgrade that changes them is noticed), and without them both do nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from captioner.studio import gradio_private

log = logging.getLogger("captioner.studio")

#: Idle time after which a session's caption result and page are dropped (seconds).
SESSION_TTL_S = 30 * 60
#: How often the reaper looks for idle sessions (seconds).
REAP_EVERY_S = 60
#: At most this many sessions are held at all (the least recently used go first).
MAX_SESSIONS = 1000
#: How long the answer to a confirmation box may take (seconds).
CONFIRM_TTL_S = 10 * 60


def _holder(blocks):
    return gradio_private.session_store(blocks)


def supported(blocks) -> bool:
    """Whether ``blocks`` (launched or mounted) has the session store this module works with."""
    return gradio_private.store_supported(_holder(blocks))


def forget_values(blocks, session_hash: str | None, component_ids: Iterable[int]) -> int:
    """Clear the session's stored copies of these components' values; return how many were cleared.

    The browser already has the values; the server's copies only serve deep links.
    """
    holder = _holder(blocks)
    if not session_hash or holder is None:
        return 0
    try:
        values = gradio_private.stored_config_values(holder, session_hash)
        if values is None:
            return 0
        cleared = 0
        for cid in component_ids:
            props = (values.get(cid) or {}).get("props")
            if isinstance(props, dict) and props.get("value") is not None:
                props["value"] = None
                cleared += 1
        return cleared
    except Exception:  # noqa: BLE001 - memory housekeeping must never break an event
        log.debug("studio: could not clear stored values", exc_info=True)
        return 0


def drop_idle(blocks, ttl_s: float) -> int:
    """Drop every session unused for ``ttl_s`` seconds (its State delete callbacks run); return how many."""
    if not supported(blocks):
        return 0
    holder = _holder(blocks)
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=ttl_s)
    idle = [sid for sid, last in gradio_private.last_used(holder).items() if last < cutoff]
    dropped = 0
    for sid in idle:
        try:
            gradio_private.delete_session_state(holder, sid)
        except Exception:  # noqa: BLE001
            log.debug("studio: delete_state(%s) failed", sid, exc_info=True)
        with gradio_private.store_lock(holder):
            last = gradio_private.session_last_used(holder, sid)
            if last is not None and last >= cutoff:  # used again meanwhile
                continue
            gradio_private.forget_session(holder, sid)
        dropped += 1
    return dropped


_libc = None


def release_free_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; a no-op elsewhere)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
            if _libc and not hasattr(_libc, "malloc_trim"):
                _libc = False
        except OSError:
            _libc = False
    if _libc:
        try:
            _libc.malloc_trim(0)
        except Exception:  # noqa: BLE001
            pass


class Reaper:
    """A daemon thread dropping idle sessions every ``every_s`` seconds."""

    def __init__(self, blocks, ttl_s: float = SESSION_TTL_S, every_s: float = REAP_EVERY_S):
        self.blocks, self.ttl_s, self.every_s = blocks, ttl_s, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Reaper:
        if not supported(self.blocks):
            log.warning("studio: this Gradio version has no session store the studio knows; "
                        "idle sessions are dropped by Gradio only")
            return self
        self._thread = threading.Thread(target=self._run, name="studio-session-reaper", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                if drop_idle(self.blocks, self.ttl_s):
                    release_free_memory()
            except Exception:  # noqa: BLE001 - keep reaping
                log.exception("studio: dropping idle sessions failed")

    def stop(self) -> None:
        self._stop.set()


class Confirmations:
    """One-time codes for destructive events, per session and action.

    The page's button first asks the server (`ask`: a new code for this session and action, the
    previous one void), shows its confirmation box, and sends the code back only if the user said
    yes; the event runs only if `take` finds that code for that session and action, unused and
    younger than ``CONFIRM_TTL_S``.  So "yes" is not something a request can simply say: a made-up
    code, a code for another action or session, or one used before is refused.
    """

    def __init__(self, max_pending: int = MAX_SESSIONS):
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def ask(self, session_hash: str | None, action: str) -> str:
        """A new code for ``action`` in this session ("" without a session: nothing can be confirmed)."""
        if not session_hash:
            return ""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._pending[(session_hash, action)] = (code, time.monotonic())
            self._pending.move_to_end((session_hash, action))
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
        return code

    def take(self, session_hash: str | None, action: str, code) -> bool:
        """Whether ``code`` is this session's pending code for ``action`` (then it is used up)."""
        if not session_hash or not isinstance(code, str) or not code:
            return False
        with self._lock:
            pending = self._pending.get((session_hash, action))
            if pending is None or not hmac.compare_digest(pending[0].encode(), code.encode("utf-8", "replace")):
                return False
            del self._pending[(session_hash, action)]
        return time.monotonic() - pending[1] <= CONFIRM_TTL_S
