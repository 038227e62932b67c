"""`run_caption_job`: caption photos as a Ray Data job and write the rows into a folder.

    list photos (driver) -> skip those already in the output -> shards of `shard_size`
      -> decode_shard   Ray tasks on CPU workers (read, EXIF-rotate, resize)
      -> CaptionWorker  an actor pool, one model load per actor (GPU when the cluster has them):
                        encoder + beam search, then the shard's file written atomically
      -> the driver counts the shards as they finish

Without an address a local Ray instance is started (and stopped at the end); with one (`auto`,
`HOST:PORT`, `ray://HOST:10001`) the job runs on that cluster, where every node needs this package
installed (`pip install "captioner[scale]"`); the model's files travel with the job.

A local instance stays on this computer (`LOCAL_RAY_ENV`): Ray's usage statistics are off (unless
the user set ``RAY_USAGE_STATS_ENABLED`` himself) and its node address is 127.0.0.1, not the
address Ray would otherwise find by routing towards a public DNS server, and Ray's own
cloud-metadata probe is sent to a closed loopback port (`proxy_trap`).  Joining a cluster
changes nothing there: the cluster's own settings apply (see docs/security.md).
"""
from __future__ import annotations

import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from captioner.errors import CaptionerError, ConfigError
from captioner.scale.config import RayJobConfig

PIP_SCALE = 'pip install "captioner[scale]"  (in a clone: pip install -e ".[scale]")'
#: CPUs each decoding task reserves (Pillow decodes a photo on one core)
DECODE_CPUS = 1.0
#: memory reserved per decoding task (a 100-megapixel photo decodes to 300 MB) and per captioning
#: actor (the model, ONNX Runtime sessions and a batch's features: about 1 GB at batch 8 on a CPU)
DECODE_MEMORY = 512 * 2**20
WORKER_MEMORY = 1536 * 2**20
LOCAL_ADDRESSES = (None, "", "local")
#: Set (unless the user set them) before a local Ray starts, and inherited by all its processes:
#: no usage statistics (Ray's reporter probes cloud metadata addresses and sends to
#: usage-stats.ray.io), and loopback as this node's address (Ray's switch for that is named after
#: Windows and macOS, where it is the default: Ray then never looks for a routable address).
LOCAL_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOCAL_NODE_ADDRESS = "127.0.0.1"
#: While a local Ray starts, HTTP made through `requests` goes to this closed loopback port: Ray's
#: dashboard process asks the cloud metadata services which cloud it runs on (169.254.169.254,
#: metadata.google.internal) whatever its usage-stats setting, and Ray has no switch for that probe.
#: Through a proxy the name is not even looked up; the refused connection ends the probe ("unknown").
#: Loopback itself bypasses it (`no_proxy`), and the workers get the user's own proxy settings back.
PROXY_TRAP = "http://127.0.0.1:9"
PROXY_NAMES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
               "no_proxy", "NO_PROXY")


class RayMissingError(CaptionerError):
    """`--ray` was asked for, and Ray Data is not installed."""


class JobFailedError(CaptionerError):
    """The Ray job stopped for a reason no photo caused (a full disk, a lost cluster)."""


def local_ray_environment(environ=None) -> None:
    """`LOCAL_RAY_ENV` into ``environ`` (default ``os.environ``), keeping what the user set."""
    environ = os.environ if environ is None else environ
    for name, value in LOCAL_RAY_ENV.items():
        environ.setdefault(name, value)


class proxy_trap:
    """Within the block, every process started sends proxied HTTP to `PROXY_TRAP` (loopback excepted);
    afterwards the environment is what it was. `user_proxies` are the values to give Ray's workers back
    ("" for a variable that was unset: an empty proxy setting counts as none)."""

    def __enter__(self):
        self.saved = {name: os.environ.get(name) for name in PROXY_NAMES}
        for name in PROXY_NAMES[:6]:
            os.environ[name] = PROXY_TRAP
        os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"
        return self

    @property
    def user_proxies(self) -> dict[str, str]:
        return {name: value or "" for name, value in self.saved.items()}

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return False


def require_ray(local: bool = False):
    """The `ray` module, or one clear error naming the pip command; ``local``: a local instance will be
    started, so `LOCAL_RAY_ENV` is set first (Ray reads some of it when it is imported)."""
    if local:
        local_ray_environment()
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissingError(f"--ray needs Ray Data and pyarrow ({exc.name or 'ray'} is not installed): "
                              f"{PIP_SCALE}") from None
    return ray


@dataclass(frozen=True)
class Layout:
    """How the captioning actors sit on the cluster."""

    workers: int
    worker_cpus: float
    worker_gpus: float
    threads: int

    @property
    def device(self) -> str:
        return "cuda" if self.worker_gpus > 0 else "cpu"


def plan_layout(cfg: RayJobConfig, cpus: float, gpus: float, local: bool, memory: float | None = None) -> Layout:
    """Actors, CPUs and GPUs per actor for a cluster with `cpus`, `gpus` and `memory` bytes to reserve
    (None: not known yet); see `RayJobConfig`'s help. `ConfigError` when the asked-for actors do not
    fit or leave no CPU for decoding."""
    worker_gpus = (1.0 if gpus >= 1 else 0.0) if cfg.worker_gpus == -1 else cfg.worker_gpus
    if worker_gpus > 0 and worker_gpus > gpus:
        raise ConfigError(f"--ray-worker-gpus {worker_gpus:g}: the cluster has {gpus:g} GPU(s)")
    by_memory = max(1, int((memory - DECODE_MEMORY) // WORKER_MEMORY)) if memory else 1 << 30
    if worker_gpus > 0:
        workers = cfg.workers or max(1, min(int(gpus // worker_gpus), by_memory))
        worker_cpus = cfg.worker_cpus or 1.0
    elif local:  # one single-threaded actor per core: faster than fewer actors with more threads each
        workers = cfg.workers or max(1, min(int(cpus), by_memory))
        worker_cpus = cfg.worker_cpus or max(1.0, cpus / workers)
    else:
        worker_cpus = cfg.worker_cpus or 2.0
        workers = cfg.workers or max(1, min(int((cpus - DECODE_CPUS) // worker_cpus), by_memory))
    if worker_gpus > 0 and workers * worker_gpus > gpus:
        raise ConfigError(f"--ray-workers {workers} x --ray-worker-gpus {worker_gpus:g} need more than the "
                          f"cluster's {gpus:g} GPU(s)")
    if not local and workers * worker_cpus + DECODE_CPUS > cpus:
        raise ConfigError(f"--ray-workers {workers} x --ray-worker-cpus {worker_cpus:g} leave no CPU for decoding "
                          f"photos on a cluster with {cpus:g} CPUs; ask for fewer or smaller workers")
    if memory and workers * WORKER_MEMORY + DECODE_MEMORY > memory:
        raise ConfigError(f"--ray-workers {workers}: each captioning worker reserves {WORKER_MEMORY / 2**30:.1f} GiB "
                          f"of memory, and Ray offers {memory / 2**30:.1f} GiB here; ask for fewer workers")
    return Layout(workers, worker_cpus, worker_gpus, max(1, round(worker_cpus)))


def local_cpus(layout: Layout) -> int:
    """Logical CPUs for a local Ray instance: the actors' share plus one decoding slot (they share the
    real cores, as the plain command's decoding threads do)."""
    return max(os.cpu_count() or 1, math.ceil(layout.workers * layout.worker_cpus)) + int(DECODE_CPUS)


@dataclass
class JobSummary:
    listed: int
    skipped: int
    captioned: int = 0
    failed: int = 0
    files: int = 0
    seconds: float = 0.0
    layout: Layout | None = None


def new_run_id() -> str:
    """Sortable (UTC time) and unique: files of later runs sort after older ones."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def _quiet(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for attr in ("print_on_execution_start", "enable_operator_progress_bars"):
        if hasattr(ctx, attr):
            setattr(ctx, attr, False)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


def connect(ray, address: str | None, cfg: RayJobConfig) -> tuple[bool, Layout]:
    """Join the cluster at `address`, or start a local instance; (whether we started it, the layout).
    A Ray already initialised in this process (a notebook, a test) is used as it is."""
    local = not ray.is_initialized() and address in LOCAL_ADDRESSES
    started = False
    if local:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        first = plan_layout(cfg, float(os.cpu_count() or 1), float(gpus), local=True)
        # "local": a new instance of our own, even where `ray start` left one running ($RAY_ADDRESS too)
        local_ray_environment()
        _loopback_node(ray)
        with proxy_trap() as trap:  # Ray's own cloud-metadata probe hits a closed loopback port
            ray.init(address="local", num_cpus=local_cpus(first), num_gpus=gpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING, _node_ip_address=LOCAL_NODE_ADDRESS,
                     runtime_env={"env_vars": trap.user_proxies})
        started = True
    elif not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster there ({exc})") from None
        started = True
    res = ray.cluster_resources()
    cpus = float(os.cpu_count() or 1) if local else float(res.get("CPU", 0))
    try:
        return started, plan_layout(cfg, cpus, float(res.get("GPU", 0)), local=local, memory=res.get("memory"))
    except ConfigError:
        if started:
            ray.shutdown()
        raise


def _loopback_node(ray) -> None:
    """Where Ray was imported before `LOCAL_RAY_ENV` was set (a notebook, a test), its constant read
    from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` at import is set as the environment now says: else Ray
    turns 127.0.0.1 into the address it routes to a public DNS server with."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER") \
            and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
        constants.ENABLE_RAY_CLUSTER = False


_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception))(?:\([^)]*\))?: (.+)$")


def root_cause(exc: BaseException) -> str:
    """"Type: message" of what went wrong under Ray's wrappers: a task's error arrives as text (its
    traceback's "OSError: ..." line), or linked through `.cause` / `__cause__`."""
    chain, seen = [exc], {id(exc)}
    while True:
        inner = getattr(chain[-1], "cause", None) or chain[-1].__cause__
        if not isinstance(inner, BaseException) or id(inner) in seen:
            break
        seen.add(id(inner))
        chain.append(inner)
    for e in chain:
        text = "\n".join([getattr(e, "traceback_str", "") or "", str(e)])
        for line in text.splitlines():
            m = _ERROR_LINE.match(line.strip())
            if m and m.group(1) not in ("UserCodeException", "RayTaskError"):
                return f"{m.group(1)}: {m.group(2)[:300]}"
    first = next((line.strip() for line in str(chain[-1]).splitlines() if line.strip()), "")
    return f"{type(chain[-1]).__name__}: {first[:300]}" if first else type(chain[-1]).__name__


def shard(photos: list[str], size: int) -> list[list[str]]:
    return [photos[i : i + size] for i in range(0, len(photos), size)]


def run_caption_job(sources: list[str], out_dir: str, *, model_dir: str | Path | None = None, decoding=None,
                    cfg: RayJobConfig | None = None, address: str | None = None, batch_size: int = 8,
                    progress: Callable[[int, int, int, list[str]], None] | None = None,
                    on_start: Callable[[JobSummary], None] | None = None, **decoding_changes) -> JobSummary:
    """Caption `sources` (files, folders, URIs) into the folder `out_dir` (see the module docstring).
    `decoding`: a `DecodingConfig` (default: the model's), with `decoding_changes` (e.g. beam_size=3;
    None keeps a field). `progress(photos_done, photos_total, failed, new_error_lines)` follows the
    shards as they finish. Bad photos become error rows; the job itself raises only for
    bad settings, an unusable output folder or a cluster that cannot be reached."""
    ray = require_ray(local=address in LOCAL_ADDRESSES)
    from captioner.model.folder import default_model_dir, load_model
    from captioner.scale.results_store import prepare_folder, scan
    from captioner.scale.sources import is_uri, list_photos
    from captioner.scale.stages import CaptionWorker, decode_shard, model_files

    cfg = cfg or RayJobConfig()
    t0 = time.perf_counter()
    model_dir = Path(model_dir or default_model_dir())
    model = load_model(model_dir, with_encoder=False)  # checks the folder here, with a clear error
    decoding = (decoding or model.decoding).replace(**decoding_changes)
    input_size = model.cfg.input_size
    prepare_folder(out_dir)
    photos = list(dict.fromkeys(list_photos(sources)))  # a photo named twice is captioned once
    done, previous_errors = scan(out_dir)
    todo = [p for p in photos if p not in done]
    summary = JobSummary(listed=len(photos), skipped=len(photos) - len(todo))
    if not todo:
        summary.seconds = time.perf_counter() - t0
        return summary
    started, layout = connect(ray, address, cfg)
    summary.layout = layout
    try:
        _quiet(ray)
        if on_start:
            on_start(summary)
        run_id = new_run_id()
        out_path = out_dir if is_uri(out_dir) else os.path.abspath(out_dir)  # workers' folders may differ
        items = [{"shard": i, "paths": chunk, "previous_errors": [previous_errors.get(p, "") for p in chunk]}
                 for i, chunk in enumerate(shard(todo, cfg.shard_size))]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # the two stages reserve different memory, so Ray Data keeps decoding a pool of CPU tasks of its
        # own instead of fusing it into the captioning actors (it fuses stages with equal requests)
        ds = ds.map(decode_shard, fn_kwargs={"input_size": input_size, "cwd": os.getcwd()}, num_cpus=DECODE_CPUS,
                    memory=DECODE_MEMORY)
        # the model's files go into the object store once; the driver holds the reference for the whole
        # job, so an actor Ray restarts after a crash can load them again
        files_ref = [ray.put(model_files(model_dir))]
        ds = ds.map(CaptionWorker, compute=ray.data.ActorPoolStrategy(size=layout.workers),
                    memory=WORKER_MEMORY,
                    fn_constructor_kwargs={"files": files_ref, "decoding": decoding,
                                           "out_dir": out_path, "run_id": run_id, "fmt": cfg.format,
                                           "batch_size": batch_size, "threads": layout.threads,
                                           "device": layout.device},
                    num_cpus=layout.worker_cpus, num_gpus=layout.worker_gpus)
        try:
            for row in ds.iter_rows():
                summary.captioned += int(row["photos"]) - int(row["failed"])
                summary.failed += int(row["failed"])
                summary.files += bool(row["file"])
                if progress:
                    progress(summary.captioned + summary.failed, len(todo), summary.failed, list(row["errors"]))
        except ray.exceptions.RayError as exc:  # not a photo's fault (those are rows): the disk, the cluster
            raise JobFailedError(f"the Ray job stopped ({root_cause(exc)}); the files written so far are kept in "
                                 f"{out_dir}, and running the same command again resumes") from None
    finally:
        if started:
            ray.shutdown()
    summary.seconds = time.perf_counter() - t0
    return summary
