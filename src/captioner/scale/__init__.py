"""Captioning at cluster scale: `captioner caption SOURCE... --ray [ADDRESS] --out DIR` runs the
pipeline as a Ray Data job (`job.run_caption_job`) and writes Parquet or JSON Lines shards
(`results_store`; `read_results(DIR)` gives one row per photo).

Ray is an optional extra (`pip install "captioner[scale]"`): this package imports without it, and
the job says which pip command to run when it is missing.
"""
from __future__ import annotations

from captioner.scale.config import RayJobConfig

__all__ = ["RayJobConfig", "read_results", "run_caption_job"]


def __getattr__(name: str):
    if name == "run_caption_job":
        from captioner.scale.job import run_caption_job

        return run_caption_job
    if name == "read_results":
        from captioner.scale.results_store import read_results

        return read_results
    raise AttributeError(name)
