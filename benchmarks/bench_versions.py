"""Two installs of captioner side by side, in one run: this checkout's and another Python's (e.g. a
virtualenv with release 0.1.0), alternating process by process so that machine noise hits both alike.

    python -m venv --system-site-packages /tmp/venv010 && git worktree add /tmp/v010 ab2242d
    /tmp/venv010/bin/pip install --no-deps /tmp/v010
    python -m benchmarks.bench_versions --other /tmp/venv010/bin/python --rounds 4

Each process loads the default model, then measures beam-3 throughput over 96 Flickr8k photos at
batch 1 and 32 (best of 3) and the median single-photo latency over 30 photos. The medians over the
rounds are printed per install. Works with the 0.1.0 API (`caption_many(paths, beam, batch_size=)`)
and the current one (`caption_many(paths, beam_size=, batch_size=)`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from tests.oracles.photos import FLICKR

PROBE = r'''
import glob, json, statistics, sys, time
paths = sorted(glob.glob(sys.argv[1] + "/*.jpg"))[:96]
runtime, model_decoding = sys.argv[2], sys.argv[3] == "model"
changes = json.loads(sys.argv[4])
if runtime == "lean":
    from captioner.runtime.lean import LeanCaptioner
    cap, old = LeanCaptioner(), False
else:
    try:
        from captioner.core.pipeline import Captioner
        old = True
    except ImportError:
        from captioner.pipeline import Captioner
        old = False
    cap = Captioner.load()
beam = ({} if model_decoding else {"beam_size": 3}) | changes
def many(ps, bs):
    if old:
        return list(cap.caption_many(ps, 3, batch_size=bs))
    return list(cap.caption_many(ps, batch_size=bs, **beam))
many(paths[:8], 8)
cap.caption(paths[0], **beam)
out = {}
for bs in (1, 32):
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        many(paths, bs)
        rates.append(len(paths) / (time.perf_counter() - t))
    out[f"photos_per_s_batch_{bs}"] = max(rates)
lat = []
for p in paths[:30]:
    t = time.perf_counter()
    cap.caption(p, **beam)
    lat.append((time.perf_counter() - t) * 1000)
out["single_photo_ms"] = statistics.median(lat)
out["captions"] = [r.caption for r in many(paths, 8)]
print(json.dumps(out))
'''


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--other", required=True, help="the other install's Python (e.g. /tmp/venv010/bin/python)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--photos", default=str(FLICKR / "images"))
    p.add_argument("--runtime", choices=("torch", "lean"), default="torch",
                   help="this checkout's engine: the PyTorch Captioner or the torch-free LeanCaptioner "
                        "(the other install always runs its own Captioner)")
    p.add_argument("--decoding", choices=("beam3", "model"), default="beam3",
                   help="beam3: each install's caption_many(beam 3); model: each install's own shipped decoding")
    p.add_argument("--this-change", action="append", default=[], metavar="FIELD=VALUE",
                   help="a decoding field changed for this checkout only (e.g. support_penalty=0, to decode as the "
                        "other install's shipped decoding does); repeatable")
    a = p.parse_args()
    changes = {k: json.loads(v) for k, v in (c.split("=", 1) for c in a.this_change)}
    runs: dict[str, list[dict]] = {"other": [], "this": []}
    other_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the other install's own package
    for r in range(a.rounds):
        for name, python, runtime, change, env in (("other", a.other, "torch", {}, other_env),
                                                    ("this", sys.executable, a.runtime, changes, None)):
            res = subprocess.run([python, "-c", PROBE, a.photos, runtime, a.decoding, json.dumps(change)],
                                 capture_output=True, text=True, cwd="/", env=env)
            if res.returncode:
                print(res.stderr[-2000:], file=sys.stderr)
                return 1
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
            shown = {k: round(v, 2) for k, v in runs[name][-1].items() if k != "captions"}
            print(f"round {r + 1} {name:5s} {shown}", flush=True)
    same = sum(x == y for x, y in zip(runs["other"][0].pop("captions"), runs["this"][0].pop("captions")))
    for r in runs["other"] + runs["this"]:
        r.pop("captions", None)
    print(f"\nsame best caption in both installs: {same}/96 (first round)")
    print("median over rounds")
    for key in runs["this"][0]:
        o = statistics.median(x[key] for x in runs["other"])
        t = statistics.median(x[key] for x in runs["this"])
        print(f"  {key:22s} other {o:7.1f}   this {t:7.1f}   this/other {t / o:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
