"""`RayJobConfig`: how a `captioner caption --ray` job is laid out on a Ray cluster. Plain data (no Ray
import), so the CLI parser can build its `--ray-*` flags from it without Ray installed."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from captioner.errors import ConfigError

FORMATS = ("parquet", "jsonl")
MAX_PHOTOS_PER_FILE = 100_000


@dataclass(frozen=True)
class RayJobConfig:
    workers: int = field(default=0, metadata={
        "help": "captioning actors (one model load each, 1.5 GiB of memory reserved); 0: one per GPU on a cluster "
                "with GPUs, else one per 2 CPUs, one CPU left for decoding (locally: one per core)",
        "range": (0, 100_000)})
    worker_cpus: float = field(default=0.0, metadata={
        "help": "CPUs each captioning actor reserves, also its thread count; 0: 1 with a GPU, else 2 (locally: "
                "the cores shared out between the actors, 1 each by default)", "range": (0.0, 1024.0)})
    worker_gpus: float = field(default=-1.0, metadata={
        "help": "GPUs per captioning actor (a fraction shares one); -1: 1 when the cluster has GPUs, else 0",
        "range": (-1.0, 64.0)})
    shard_size: int = field(default=256, metadata={
        "help": "photos per shard: one output file, one unit of work for a worker (redone whole if the worker dies)",
        "range": (1, MAX_PHOTOS_PER_FILE)})
    format: str = field(default="parquet", metadata={
        "help": "output file format in the --out folder", "choices": FORMATS})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "format":
                if value not in FORMATS:
                    raise ConfigError(f"--ray-format must be one of {', '.join(FORMATS)}, not {value!r}")
                continue
            lo, hi = f.metadata["range"]
            flag = "--ray-" + f.name.replace("_", "-")
            whole = f.type in ("int", int)
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) \
                    or (not whole and not math.isfinite(value)):
                raise ConfigError(f"{flag} must be a{' whole' if whole else ''} number, not {value!r}")
            if not lo <= value <= hi:
                raise ConfigError(f"{flag} must be between {lo:g} and {hi:g}, not {value:g}")
        if self.worker_gpus < 0 and self.worker_gpus != -1:
            raise ConfigError(f"--ray-worker-gpus must be -1 (auto) or at least 0, not {self.worker_gpus:g}")
