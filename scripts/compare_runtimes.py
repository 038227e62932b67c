"""The torch-free path (`captioner.runtime.lean.LeanCaptioner`) against the PyTorch path (`Captioner.caption`) on a
folder of photos: the same best caption, the same candidates' word ids, scores within 1e-4, the same tags
(see `same_tags`) and warnings, and confidence within 1e-3, at the model's decoding and any beam sizes given.

    python scripts/compare_runtimes.py /work/shared/data/coco-dev/images --beams 0 1 3 10 --grounding both

0 in --beams is the model's own beam size; --grounding on|off|both (off: tag_bonus 0). Prints each
mismatch and a summary; exit code 1 when any photo differs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def same_tags(a, b) -> bool:
    """The same tag labels with probabilities within 1e-4 (the order of tags whose probabilities tie exactly, two
    labels from the same ImageNet classes like `sign` and `street sign`, is torch.topk's, which is unspecified)."""
    x, y = {t.label: t.score for t in a.tags}, {t.label: t.score for t in b.tags}
    return x.keys() == y.keys() and all(abs(x[k] - y[k]) < 1e-4 for k in x)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    p.add_argument("--beams", type=int, nargs="+", default=[0])
    p.add_argument("--grounding", choices=["on", "off", "both"], default="on")
    p.add_argument("--model", default=None)
    a = p.parse_args()
    from captioner.pipeline import Captioner
    from captioner.runtime.lean import LeanCaptioner

    photos = sorted(x for x in Path(a.folder).iterdir() if x.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = photos[: a.limit] if a.limit else photos
    ref, lean = Captioner.from_pretrained(a.model), LeanCaptioner(a.model)
    settings = []
    for beam in a.beams:
        for g in (["on", "off"] if a.grounding == "both" else [a.grounding]):
            change = {"beam_size": beam or None}
            if g == "off":
                change["tag_bonus"] = 0.0
            settings.append({k: v for k, v in change.items() if v is not None})
    bad, n, t_ref, t_lean, worst = 0, 0, 0.0, 0.0, 0.0
    for change in settings:
        for photo in photos:
            t = time.perf_counter()
            want = ref.caption(photo, **change)
            t_ref += time.perf_counter() - t
            t = time.perf_counter()
            got = lean.caption(photo, **change)
            t_lean += time.perf_counter() - t
            n += 1
            diff = max((abs(x.score - y.score) for x, y in zip(want.candidates, got.candidates)), default=0.0)
            worst = max(worst, diff)
            same = ([c.ids for c in want.candidates] == [c.ids for c in got.candidates] and diff < 1e-4
                    and same_tags(want, got) and want.warnings == got.warnings
                    and (want.confidence is None) == (got.confidence is None)
                    and (want.confidence is None or abs(want.confidence - got.confidence) < 1e-3))
            if not same:
                bad += 1
                print(f"DIFFERS {photo.name} {change}: {want.caption!r} ({want.confidence}) vs {got.caption!r} "
                      f"({got.confidence})", flush=True)
    print(f"{n - bad}/{n} photo-settings identical ({len(photos)} photos x {settings}); largest score difference "
          f"{worst:.2e}; PyTorch path {t_ref / max(n, 1) * 1000:.0f} ms/photo, torch-free {t_lean / max(n, 1) * 1000:.0f} "
          "ms/photo (in process)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
