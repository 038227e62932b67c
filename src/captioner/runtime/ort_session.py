"""ONNX Runtime sessions for CPU inference, without torch: `import_onnxruntime` (telemetry off, see
`captioner.runtime.onnx_runtime`'s docstring) and `session`."""
from __future__ import annotations

import os
import threading
from pathlib import Path

# Before anything can import onnxruntime: ONNX Runtime reads it once.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

_ort_lock = threading.Lock()
_telemetry_off = False


def import_onnxruntime():
    """`import onnxruntime`, with its telemetry turned off."""
    global _telemetry_off
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime as ort

    if not _telemetry_off:
        with _ort_lock:
            if not _telemetry_off:
                disable = getattr(ort, "disable_telemetry_events", None)
                if disable is not None:
                    disable()
                _telemetry_off = True
    return ort


def session(path: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session whose idle threads do not spin-wait: between its runs the beam search's
    bookkeeping (and the decoder step after an encode) needs the same cores; with spinning one photo at
    beam 3 took 159 ms instead of 55 ms on a 2-core CPU beside another busy process (benchmarks/README.md).
    `threads` 0: one per core."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads or os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
