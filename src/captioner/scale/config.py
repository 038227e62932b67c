"""`RayJobConfig`: how a `captioner caption --ray` job is laid out on a Ray cluster. Plain data (no Ray
import), so the CLI parser can build its `--ray-*` flags from it without Ray installed."""
from __future__ import annotations

from dataclasses import dataclass

from captioner.settings import Settings, setting

FORMATS = ("parquet", "jsonl")
MAX_PHOTOS_PER_FILE = 100_000


@dataclass(frozen=True)
class RayJobConfig(Settings):
    flag_prefix = "ray-"

    workers: int = setting(
        0, "captioning actors (one model load each, 1.5 GiB of memory reserved); 0: one per GPU on a cluster "
        "with GPUs, else one per 2 CPUs, one CPU left for decoding (locally: one per core)", lo=0, hi=100_000)
    worker_cpus: float = setting(
        0.0, "CPUs each captioning actor reserves, also its thread count; 0: 1 with a GPU, else 2 (locally: "
        "the cores shared out between the actors, 1 each by default)", lo=0.0, hi=1024.0)
    worker_gpus: float = setting(
        -1.0, "GPUs per captioning actor (a fraction shares one); -1: 1 when the cluster has GPUs, else 0",
        lo=0.0, hi=64.0, special={-1: "auto"})
    shard_size: int = setting(
        256, "photos per shard: one output file, one unit of work for a worker (redone whole if the worker dies)",
        lo=1, hi=MAX_PHOTOS_PER_FILE)
    format: str = setting("parquet", "output file format in the --out folder", choices=FORMATS)
