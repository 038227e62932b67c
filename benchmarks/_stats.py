"""What every benchmark reports beside its timings, written once: percentiles, the machine's load average
(a busy machine makes every figure slower), and the peak memory of a command run as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: a 1-minute load average above this means other processes share the CPU: the timings are pessimistic
BUSY_LOAD = 0.5


def percentile(values, q: float) -> float:
    """The q-th percentile (q in 0..100) by linear interpolation between the nearest ranks; nan when empty."""
    v = sorted(values)
    if not v:
        return float("nan")
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (nan where the system has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def load_text() -> str:
    """The load average now, as "1.02 / 0.98 / 1.10" (1, 5, 15 minutes)."""
    return " / ".join(f"{x:.2f}" for x in load_average())


def busy_warning() -> str:
    """A warning to print with the results when the machine is busy, else ""."""
    load = load_average()[0]
    return f"WARNING: load average {load:.2f}: other processes are using the CPU" if load > BUSY_LOAD else ""


# ru_maxrss of RUSAGE_CHILDREN is the largest of all waited-for descendants (and Linux carries it across
# fork + exec), so a child of a big benchmark process would report at least the benchmark's own peak.
# A small Python launcher in between reports the command's real figure.
_PEAK_LAUNCHER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL); "
                  "open(sys.argv[1], 'w').write('%d %d' % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc))")


def peak_rss(cmd: list, report: Path, stderr=None) -> tuple[int, float, float]:
    """Run `cmd` (its standard output discarded, its standard error to `stderr`); its exit code, wall seconds
    and peak resident memory in MB. `report` is a scratch file for the launcher's figures."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _PEAK_LAUNCHER, str(report), *map(str, cmd)], stdout=subprocess.DEVNULL,
                   stderr=stderr, check=False)
    wall = time.perf_counter() - start
    kib, rc = (int(x) for x in Path(report).read_text().split())
    return rc, wall, kib / 1024  # ru_maxrss is in KiB on Linux
