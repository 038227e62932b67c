"""Everything stays on this computer: `captioner caption` and the studio, run under
`strace -f -e trace=network`, connect to nothing but loopback and local sockets and look up no host
name (no packet to port 53), while they export and run the ONNX Runtime twins. ONNX Runtime's
telemetry (1DS: DNS lookups of its events host, an event store with a device id under
$XDG_CACHE_HOME/Microsoft) must be off from the start.

The commands run with the switches a user would not have set removed from their environment (ONNX
Runtime's and Gradio's opt-outs, and the CI variables that silence ONNX Runtime's telemetry), so the
project itself has to turn everything off. Skipped without strace (apt-get install strace)."""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")

STARTUP_TIMEOUT_S = 240

#: variables that would hide a phone-home: the opt-outs the project must set itself, and the CI
#: markers ONNX Runtime reads to stay silent (from the strings of onnxruntime 1.32's library)
HIDING_VARIABLES = ("ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "GRADIO_ANALYTICS_ENABLED",
                    "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK", "CAPTIONER_ONNX",
                    "CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                    "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR")

SENDING_CALLS = ("connect", "sendto", "sendmsg", "sendmmsg")
_CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\w+)\(")
_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\),.*?inet_pton\(AF_INET6, "([^"]+)"')
_FAMILY = re.compile(r"sa_family=(\w+)")
LOCAL_FAMILIES = {"AF_UNIX", "AF_LOCAL", "AF_NETLINK", "AF_UNSPEC"}


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def network_findings(trace: str) -> list[str]:
    """The lines of an strace network trace that send anywhere but loopback or a local socket, or
    that talk to port 53 (a DNS lookup) on any address."""
    bad = []
    for line in trace.splitlines():
        m = _CALL.match(line)
        if not m or m.group(2) not in SENDING_CALLS:
            continue
        families = _FAMILY.findall(line)
        addresses = [(int(p), a) for p, a in _INET.findall(line) + _INET6.findall(line)]
        unknown = [f for f in families if f not in LOCAL_FAMILIES | {"AF_INET", "AF_INET6"}]
        unparsed = families.count("AF_INET") + families.count("AF_INET6") != len(addresses)
        if unknown or unparsed or any(port == 53 or not _is_loopback(a) for port, a in addresses):
            bad.append(line)
    return bad


def test_findings_parser():
    trace = "\n".join([
        '101 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0',
        '101 sendto(8, "\\277", 50, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(53), '
        'sin_addr=inet_addr("127.0.0.53")}, 16) = 50',
        '102 connect(9, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>',
        '103 connect(4, {sa_family=AF_INET, sin_port=htons(7860), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '103 connect(4, {sa_family=AF_INET6, sin6_port=htons(7860), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '104 connect(5, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT',
        '104 sendto(6, {{len=20, type=RTM_GETADDR}}, 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20',
        '104 sendto(7, "x", 1, 0, NULL, 0) = 1',
        "105 <... connect resumed>) = 0",
    ])
    assert [line.split()[0] for line in network_findings(trace)] == ["101", "101", "102"]


# ---------------------------------------------------------------------------- running traced
@pytest.fixture
def traced_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HIDING_VARIABLES}
    env.update(CAPTIONER_CACHE_DIR=str(tmp_path / "cache"),  # the ONNX exports happen in the traced run
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),   # where ONNX Runtime keeps its telemetry store
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    img = Image.new("RGB", (160, 120), (40, 120, 40))
    for x in range(50, 110):
        for y in range(30, 90):
            img.putpixel((x, y), (200, 60 + (x - 50), 30))
    img.save(path, quality=90)
    return path


def strace_command(trace: Path, *args: str) -> list[str]:
    return ["strace", "-f", "-qq", "-e", "trace=network", "-o", str(trace), sys.executable, "-m", "captioner", *args]


def check_stayed_local(trace: Path, env: dict[str, str]) -> None:
    findings = network_findings(trace.read_text(errors="replace"))
    assert not findings, "network traffic off this computer:\n" + "\n".join(findings[:20])
    onnx_files = list(Path(env["CAPTIONER_CACHE_DIR"]).glob("onnx/*.onnx"))
    assert any(p.name.startswith("encoder-") for p in onnx_files), "the ONNX encoder was not exported in the traced run"
    store = Path(env["XDG_CACHE_HOME"]) / "Microsoft"
    assert not store.exists(), f"ONNX Runtime telemetry wrote {sorted(str(p) for p in store.rglob('*'))}"


@pytest.mark.slow
@needs_strace
def test_caption_command_stays_local(tiny_model_dir, photo, traced_env, tmp_path):
    trace = tmp_path / "caption.strace"
    run = subprocess.run(strace_command(trace, "caption", str(photo), "--model", str(tiny_model_dir)),
                         env=traced_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()  # a caption was printed
    names = {p.name.split("-")[0] for p in Path(traced_env["CAPTIONER_CACHE_DIR"]).glob("onnx/*.onnx")}
    assert names == {"encoder", "decoder"}  # both ONNX Runtime twins were made (and used) in the traced run
    check_stayed_local(trace, traced_env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _stop(proc: subprocess.Popen) -> None:
    """Stop the traced studio (strace's child), so strace writes its trace and exits; then strace."""
    for pid in _child_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group started below: strace and the studio only
        proc.wait()


@pytest.mark.slow
@needs_strace
def test_studio_stays_local(tiny_model_dir, photo, traced_env, tmp_path):
    import gradio_client

    port = _free_port()
    trace, log_path = tmp_path / "studio.strace", tmp_path / "studio.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(strace_command(trace, "studio", "--model", str(tiny_model_dir), "--gallery",
                                               str(tmp_path / "gallery"), "--port", str(port)),
                                env=traced_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"the studio exited:\n{log_path.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"the studio did not answer:\n{log_path.read_text(errors='replace')}"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        client = gradio_client.Client(url, verbose=False, analytics_enabled=False, download_files=False)
        result = client.predict([gradio_client.handle_file(str(photo))], 2, 8, api_name="/caption")
        assert result["captioned"] == 1, result
    finally:
        _stop(proc)
    check_stayed_local(trace, traced_env)


# ---------------------------------------------------------------------------- a local Ray (`caption --ray`)
_SPAWN = re.compile(r"^(\d+)\s+(?:<\.\.\. )?(?:clone3?|fork|vfork)\b.*= (\d+)$")
_EXEC = re.compile(r'^(\d+)\s+execve\("[^"]*", \[(.*)\]')

RAY_SCRIPT = """
import os, ray
from captioner.scale.config import RayJobConfig
from captioner.scale.job import connect
connect(ray, None, RayJobConfig(workers=1))
task = ray.remote(lambda: os.environ.get("RAY_USAGE_STATS_ENABLED"))
print("NODES", [n["NodeManagerAddress"] for n in ray.nodes()], "WORKER", ray.get(task.remote()))
ray.shutdown()
"""


def ray_dashboard_tasks(trace: str) -> set[int]:
    """The process and thread ids of Ray's dashboard process (and what it started), from an strace -f log."""
    children: dict[int, list[int]] = {}
    roots = set()
    for line in trace.splitlines():
        if m := _SPAWN.match(line):
            children.setdefault(int(m.group(1)), []).append(int(m.group(2)))
        elif (m := _EXEC.match(line)) and "ray/dashboard/dashboard.py" in m.group(2):
            roots.add(int(m.group(1)))
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


@pytest.mark.slow
@pytest.mark.extras("scale")
@needs_strace
def test_a_local_ray_stays_on_loopback(traced_env, tmp_path):
    """`caption --ray`'s local Ray under strace: its processes talk over 127.0.0.1 (they used the address
    routed towards 8.8.8.8, found by connecting a socket to 8.8.8.8:53) and nothing leaves the computer, not
    even Ray's own cloud-metadata probe from its dashboard process (169.254.169.254, metadata.google.internal),
    which now goes to a closed loopback port (`scale.job.proxy_trap`)."""
    trace = tmp_path / "ray.strace"
    env = {k: v for k, v in traced_env.items() if not k.startswith("RAY_")}
    run = subprocess.run(["strace", "-f", "-qq", "-s", "256", "-e", "trace=network,process", "-o", str(trace),
                          sys.executable, "-c", RAY_SCRIPT], env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "NODES ['127.0.0.1'] WORKER 0" in run.stdout, run.stdout
    text = trace.read_text(errors="replace")
    assert ray_dashboard_tasks(text), "no Ray dashboard process in the trace"
    off_computer = network_findings(text)
    assert not off_computer, "network traffic off this computer:\n" + "\n".join(off_computer[:20])
