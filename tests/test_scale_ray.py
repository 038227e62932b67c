"""`captioner caption --ray`: the Ray Data job (captioner.scale) against the plain command.

The job tests run on one local Ray instance (2 CPUs) shared by the module; they need the optional
extra (`pip install -e ".[scale]"`), are marked `extras("scale")` and are skipped with that reason
without it (failed with --require-extras). The tests of the
settings, the output folder and the missing-Ray message run without Ray.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from captioner.cli.main import main
from captioner.errors import ConfigError
from captioner.scale.config import RayJobConfig
from captioner.scale.job import Layout, plan_layout
from captioner.scale.results_store import part_files, read_results, scan, write_shard
from oracles.photos import make_photo, mandelbrot_photo, real_photos, tiny_png_bytes


# ---------------------------------------------------------------------------------------- no Ray needed
def test_settings_are_checked_with_one_clear_line():
    with pytest.raises(ConfigError, match="--ray-workers must be between"):
        RayJobConfig(workers=-1)
    with pytest.raises(ConfigError, match="--ray-shard-size must be between"):
        RayJobConfig(shard_size=0)
    with pytest.raises(ConfigError, match="--ray-worker-gpus must be -1"):
        RayJobConfig(worker_gpus=-0.5)
    with pytest.raises(ConfigError, match="--ray-format"):
        RayJobConfig(format="csv")
    with pytest.raises(ConfigError, match="whole number"):
        RayJobConfig(workers=1.5)


def test_layout_uses_gpus_when_there_are_some_and_leaves_cpus_for_decoding():
    assert plan_layout(RayJobConfig(), cpus=64, gpus=4, local=False) == Layout(4, 1.0, 1.0, 1)
    assert plan_layout(RayJobConfig(), cpus=64, gpus=4, local=False).device == "cuda"
    cpu = plan_layout(RayJobConfig(), cpus=33, gpus=0, local=False)
    assert (cpu.workers, cpu.worker_cpus, cpu.device) == (16, 2.0, "cpu")
    assert plan_layout(RayJobConfig(worker_gpus=0), cpus=8, gpus=4, local=False).device == "cpu"
    assert plan_layout(RayJobConfig(worker_gpus=0.5), cpus=8, gpus=1, local=False).workers == 2
    assert plan_layout(RayJobConfig(), cpus=2, gpus=0, local=True) == Layout(2, 1.0, 0.0, 1)
    assert plan_layout(RayJobConfig(workers=1), cpus=2, gpus=0, local=True) == Layout(1, 2.0, 0.0, 2)
    assert plan_layout(RayJobConfig(), cpus=16, gpus=0, local=True, memory=8 * 2**30).workers == 5  # 1.5 GiB each
    with pytest.raises(ConfigError, match="reserves 1.5 GiB"):
        plan_layout(RayJobConfig(workers=4), cpus=16, gpus=0, local=True, memory=4 * 2**30)
    with pytest.raises(ConfigError, match="leave no CPU for decoding"):
        plan_layout(RayJobConfig(workers=2, worker_cpus=1), cpus=2, gpus=0, local=False)
    with pytest.raises(ConfigError, match="GPU"):
        plan_layout(RayJobConfig(workers=3, worker_gpus=1), cpus=16, gpus=2, local=False)


def test_a_failed_job_names_the_real_cause():
    """A worker's error reaches the driver as text inside Ray's wrappers; the one line names the cause."""
    from captioner.scale.job import root_cause

    class Wrapped(Exception):
        traceback_str = ("ray::MapWorker(Map(CaptionWorker)).submit() (pid=1)\nTraceback (most recent call last):\n"
                         '  File "results_store.py", line 50, in write_shard\nOSError: [Errno 28] No space left on '
                         "device\n\nThe above exception was the direct cause of:\nray.data.exceptions."
                         "UserCodeException: UDF failed to process a data block.")

    assert root_cause(Wrapped("UDF failed")) == "OSError: [Errno 28] No space left on device"
    try:
        try:
            raise ConnectionError("head node lost")
        except ConnectionError as inner:
            raise RuntimeError("job failed") from inner
    except RuntimeError as outer:
        assert root_cause(outer) == "ConnectionError: head node lost"


class FakeRay:
    """What `connect` uses of the `ray` module, recording how Ray would be started."""

    def __init__(self):
        self.calls = []
        self._private = type("P", (), {"ray_constants": type("C", (), {"ENABLE_RAY_CLUSTER": True})()})()

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        from captioner.scale.job import LOCAL_RAY_ENV

        self.calls.append((kwargs, {name: os.environ.get(name) for name in LOCAL_RAY_ENV}))
        self.proxies_at_start = {name: os.environ.get(name) for name in ("http_proxy", "HTTPS_PROXY", "no_proxy")}

    def cluster_resources(self):
        return {"CPU": 4.0, "memory": 16 * 2**30}

    def shutdown(self):
        pass


def _unset(monkeypatch, *names):
    for name in names:  # set first, so that monkeypatch removes what `connect` sets afterwards
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)


def test_a_local_ray_starts_with_its_metadata_probe_trapped_on_loopback(monkeypatch):
    """Ray's dashboard process probes cloud metadata services whatever its usage-stats setting: while a local
    Ray starts, proxied HTTP goes to a closed loopback port (loopback itself exempt); the workers and this
    process get the user's own proxy settings back."""
    from captioner.scale.job import PROXY_TRAP, connect

    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    ray = FakeRay()
    connect(ray, None, RayJobConfig(workers=1))
    assert ray.proxies_at_start == {"http_proxy": PROXY_TRAP, "HTTPS_PROXY": PROXY_TRAP,
                                    "no_proxy": "127.0.0.1,localhost,::1"}
    workers_env = ray.calls[0][0]["runtime_env"]["env_vars"]
    assert workers_env["https_proxy"] == "http://proxy.example:3128" and workers_env["http_proxy"] == ""
    assert os.environ["https_proxy"] == "http://proxy.example:3128" and "http_proxy" not in os.environ


def test_a_local_ray_sends_no_usage_stats_and_binds_to_loopback(monkeypatch):
    """`caption --ray` without an address: usage stats off and node address 127.0.0.1, in the environment
    every Ray process inherits (Ray reads both there); what the user set is kept; a cluster is left alone."""
    from captioner.scale.job import LOCAL_RAY_ENV, connect

    _unset(monkeypatch, *LOCAL_RAY_ENV)
    ray = FakeRay()
    connect(ray, None, RayJobConfig(workers=1))
    ((kwargs, env),) = ray.calls
    assert kwargs["address"] == "local" and kwargs["_node_ip_address"] == "127.0.0.1"
    assert kwargs["include_dashboard"] is False
    assert env == {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    assert ray._private.ray_constants.ENABLE_RAY_CLUSTER is False  # Ray imported before: told as well

    _unset(monkeypatch, *LOCAL_RAY_ENV)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # the user's own choice
    ray = FakeRay()
    connect(ray, "local", RayJobConfig(workers=1))
    assert ray.calls[0][1]["RAY_USAGE_STATS_ENABLED"] == "1"

    _unset(monkeypatch, *LOCAL_RAY_ENV)
    ray = FakeRay()
    connect(ray, "10.0.0.5:6379", RayJobConfig(workers=1))  # joining a cluster: its own settings apply
    ((kwargs, env),) = ray.calls
    assert kwargs["address"] == "10.0.0.5:6379" and "_node_ip_address" not in kwargs
    assert env == {"RAY_USAGE_STATS_ENABLED": None, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": None}


@pytest.mark.extras("scale")
@pytest.mark.slow
def test_a_real_local_ray_runs_on_loopback_without_usage_stats(tmp_path):
    """The same with Ray itself, in a fresh process (Ray imported first, as `caption --ray` does): the node's
    address and the GCS are on 127.0.0.1 and a worker task sees usage stats off."""
    import subprocess

    script = (
        "import os, ray\n"
        "from captioner.scale.config import RayJobConfig\n"
        "from captioner.scale.job import connect\n"
        "connect(ray, None, RayJobConfig(workers=1))\n"
        "task = ray.remote(lambda: os.environ.get('RAY_USAGE_STATS_ENABLED'))\n"
        "print('NODES', [n['NodeManagerAddress'] for n in ray.nodes()])\n"
        "print('GCS', ray.get_runtime_context().gcs_address)\n"
        "print('WORKER', ray.get(task.remote()))\n"
        "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines() if line.split(" ")[0] in ("NODES", "GCS", "WORKER"))
    assert lines["NODES"] == "['127.0.0.1']", p.stdout
    assert lines["GCS"].startswith("127.0.0.1:"), p.stdout
    assert lines["WORKER"] == "0", p.stdout


def test_ray_word_after_the_flag_is_an_address_or_a_photo_source(tmp_path):
    from captioner.cli.caption_ray import split_address

    assert split_address("local", ["a.jpg"]) == (None, ["a.jpg"])
    assert split_address("auto", ["a.jpg"]) == ("auto", ["a.jpg"])
    assert split_address("ray://head:10001", ["a"]) == ("ray://head:10001", ["a"])
    assert split_address("10.0.0.5:6379", ["a"]) == ("10.0.0.5:6379", ["a"])
    assert split_address(str(tmp_path), ["b.jpg"]) == (None, [str(tmp_path), "b.jpg"])  # `--ray photos/ b.jpg`


def test_without_ray_the_flag_says_which_pip_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    code = main(["caption", str(tmp_path / "a.jpg"), "--ray", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert 'pip install "captioner[scale]"' in err[0] and 'pip install -e ".[scale]"' in err[0]
    assert not (tmp_path / "out").exists()  # nothing written
    import captioner.scale  # the package itself imports without Ray  # noqa: F401


def test_ray_flag_refuses_stdout_and_a_file_as_out(tmp_path, capsys):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.jpg")
    assert main(["caption", str(tmp_path / "a.jpg"), "--ray"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert main(["caption", str(tmp_path / "a.jpg"), "--ray", "--out", str(tmp_path / "o"), "--json"]) == 2
    assert "drop --json" in capsys.readouterr().err
    assert main(["caption", str(tmp_path / "a.jpg"), "--ray", "--out", str(tmp_path / "o"), "--ray-shard-size",
                 "0"]) == 2
    assert "--ray-shard-size must be between" in capsys.readouterr().err
    if "--write-metadata" in _caption_help():
        assert main(["caption", str(tmp_path / "a.jpg"), "--ray", "--out", str(tmp_path / "o"), "--write-metadata",
                     "sidecar"]) == 2
        assert "run it without --ray" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _caption_help() -> str:
    from captioner.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["caption"].format_help()


@pytest.mark.parametrize("fmt", ["jsonl", pytest.param("parquet", marks=pytest.mark.extras("scale"))])
def test_output_folder_keeps_one_row_per_photo(tmp_path, fmt):
    """A success is never replaced by a later error; a later error replaces an earlier one; temporary files
    of a killed writer are not read."""
    ok = {"image": "a.jpg", "candidates": [{"caption": "a dog", "tokens": ["a", "dog"], "score": -1.0,
                                            "normalized_score": -0.5}], "error": None}
    write_shard(str(tmp_path), "20260101T000000-aaaaaa", 0, [ok, {"image": "b.jpg", "candidates": [],
                                                                   "error": "b.jpg: old"}], fmt)
    write_shard(str(tmp_path), "20260102T000000-bbbbbb", 0, [{"image": "a.jpg", "candidates": [], "error": "x"},
                                                              {"image": "b.jpg", "candidates": [],
                                                               "error": "b.jpg: new"}], fmt)
    (tmp_path / ".part-20260103T000000-cccccc-000000.jsonl.1234.tmp").write_text('{"image": "c.jpg"')
    rows = read_results(str(tmp_path))
    assert [r["image"] for r in rows] == ["a.jpg", "b.jpg"]
    assert rows[0]["candidates"][0]["caption"] == "a dog" and rows[0]["error"] is None
    assert rows[1]["error"] == "b.jpg: new"
    assert scan(str(tmp_path)) == ({"a.jpg"}, {"b.jpg": "b.jpg: new"})
    assert len(part_files(str(tmp_path))) == 2


@pytest.mark.extras("scale")
def test_remote_sources_are_listed_and_read_through_fsspec(tmp_path):
    """A filesystem pyarrow does not know (fsspec's memory://) lists and reads like a folder; errors name
    the URI."""
    import fsspec

    from captioner.scale.sources import list_photos
    from captioner.scale.stages import decode_shard

    fs = fsspec.filesystem("memory")
    fs.pipe("/photos/b/one.png", tiny_png_bytes((40, 30)))
    fs.pipe("/photos/a.jpg", b"not a photo")
    fs.pipe("/photos/notes.txt", b"skipped")
    names = list_photos(["memory://photos", "memory://photos/missing.jpg"])
    assert names == ["memory://photos/a.jpg", "memory://photos/b/one.png", "memory://photos/missing.jpg"]
    row = decode_shard({"shard": 0, "paths": names, "previous_errors": ["", "", ""]}, input_size=16)
    assert row["errors"][0].startswith("memory://photos/a.jpg: not an image file")
    assert row["errors"][1] == "" and (row["widths"][1], row["heights"][1]) == (40, 30)
    assert row["errors"][2] == "memory://photos/missing.jpg: file not found"
    assert len(row["pixels"]) == 16 * 16 * 3


# ---------------------------------------------------------------------------------------- the Ray job
@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def forty_photos(tmp_path_factory) -> list[str]:
    """40 sources: Flickr8k test photos (generated ones without the data set), odd images, and 4 bad files."""
    d = tmp_path_factory.mktemp("ray_photos")
    good = [str(p) for p in real_photos(30)]
    for i in range(30 - len(good)):
        good.append(str(make_photo(d / f"gen_{i:02d}.jpg", 320 + 16 * i, 240, seed=i)))
    (d / "tiny.png").write_bytes(tiny_png_bytes((8, 6)))
    Image.new("RGBA", (90, 60), (0, 0, 255, 128)).save(d / "alpha.png")
    Image.new("L", (64, 80), 128).save(d / "grey.jpg")
    mandelbrot_photo(d / "mandelbrot.jpg")
    make_photo(d / "big.jpg", 3000, 2000, seed=99)
    make_photo(d / "wide.jpg", 1200, 200, seed=98)
    (d / "junk.jpg").write_text("not a photo")
    (d / "empty.png").write_bytes(b"")
    full = io.BytesIO()
    make_photo(d / "whole.jpg", 640, 480, seed=97)
    full.write((d / "whole.jpg").read_bytes())
    (d / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 3])
    (d / "whole.jpg").unlink()
    odd = ["tiny.png", "alpha.png", "grey.jpg", "mandelbrot.jpg", "big.jpg", "wide.jpg"]
    bad = ["junk.jpg", "empty.png", "truncated.jpg", "missing.jpg"]
    return good + [str(d / n) for n in odd + bad]


@pytest.fixture(scope="module")
def cli_rows(forty_photos, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("cli") / "captions.jsonl"
    assert main(["caption", *forty_photos, "--out", str(out)]) == 1  # the bad files
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["image"]: r for r in rows}


def _raw_rows(out_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for name in part_files(str(out_dir)):
        rows += pq.read_table(out_dir / name).to_pylist()
    return rows


@pytest.mark.extras("scale")
@pytest.mark.slow
def test_ray_job_matches_the_plain_command_and_a_rerun_adds_nothing(ray_local, forty_photos, cli_rows, tmp_path,
                                                                    capsys):
    capsys.readouterr()  # the plain command's output (the fixture)
    out = tmp_path / "out"
    flags = ["--ray", "--out", str(out), "--ray-workers", "1", "--ray-worker-cpus", "1", "--ray-shard-size", "8"]
    assert main(["caption", *forty_photos, *flags]) == 1  # the 4 bad files, as the plain command says
    err = capsys.readouterr().err
    assert "captioned 36 photo(s)" in err and "4 of 40 photo(s) could not be captioned" in err
    assert sorted(line for line in err.splitlines() if line.startswith("error: ")) == \
        sorted(f"error: {r['error']}" for r in cli_rows.values() if r["error"])
    rows = read_results(str(out))
    assert len(_raw_rows(out)) == 40 and len(rows) == 40
    assert {r["image"] for r in rows} == set(cli_rows) == set(forty_photos)
    for r in rows:
        want = cli_rows[r["image"]]
        assert set(r) == set(want)  # the same fields as the command's JSON Lines
        assert r["error"] == want["error"]
        assert [c["caption"] for c in r["candidates"]] == [c["caption"] for c in want["candidates"]], r["image"]
        assert [c["score"] for c in r["candidates"]] == pytest.approx([c["score"] for c in want["candidates"]],
                                                                       abs=1e-3)
    assert sum(r["error"] is not None for r in rows) == 4
    files = {n: (out / n).stat().st_mtime_ns for n in part_files(str(out))}
    assert len(files) == 5

    assert main(["caption", *forty_photos, *flags]) == 1  # the 4 bad files are tried again, fail the same way
    assert "skipping 36 photo(s) already captioned" in capsys.readouterr().err
    assert {n: (out / n).stat().st_mtime_ns for n in part_files(str(out))} == files  # nothing written
    assert read_results(str(out)) == rows


def _worker_pids() -> set[int]:
    """Processes of this machine that run a captioning actor (Ray names them after the class)."""
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if b"CaptionWorker" in cmd:
                pids.add(int(d.name))
    return pids


@pytest.mark.extras("scale")
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_a_killed_worker_is_redone_without_duplicates(ray_local, forty_photos, cli_rows, tmp_path, monkeypatch):
    from captioner.scale.job import run_caption_job

    # named relative to "/" while the workers were started in another folder: they read them from the
    # driver's folder, and the rows name them as given
    monkeypatch.chdir("/")
    photos = [os.path.relpath(p, "/") for p in forty_photos if cli_rows[p]["error"] is None]
    out = tmp_path / "out"
    cfg = RayJobConfig(workers=2, worker_cpus=0.5, shard_size=2, format="parquet")
    shards = len(photos) // 2
    killed, at_kill = [], []

    def killer():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            done = part_files(str(out)) if out.is_dir() else []
            pids = _worker_pids()
            if len(done) >= 2 and pids:
                pid = min(pids)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                at_kill.append(len(done))
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = run_caption_job(photos, str(out), cfg=cfg, beam_size=3)
    thread.join(5)
    assert killed, "no captioning worker was found to kill"
    assert at_kill[0] < shards, "the worker was killed after the job had finished: the test proved nothing"
    raw = _raw_rows(out)
    assert sorted(r["image"] for r in raw) == sorted(photos)  # every photo once: none lost, none twice
    assert all(r["error"] is None and r["candidates"] for r in raw)
    assert (summary.captioned, summary.failed, summary.files) == (len(photos), 0, shards)
    assert len(part_files(str(out))) == shards
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
