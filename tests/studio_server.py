"""Starting and stopping a real studio server (``python -m captioner.studio``) for the tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_studio(model_dir: Path, gallery_dir: Path, log_path: Path, extra: list[str] = ()):
    """Start ``python -m captioner.studio`` and wait until it answers; return (process, url)."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "captioner.studio", "--model", str(model_dir),
                             "--gallery", str(gallery_dir), "--port", str(port), *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the studio exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the studio did not start in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text(errors='replace')}")


def stop_studio(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
