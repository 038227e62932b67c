"""Refresh the studio screenshots in docs/ (docs/studio-caption.png, docs/studio-gallery.png).

    python scripts/update_screenshots.py                     # the shipped model (real captions)
    python scripts/update_screenshots.py --model runs/x/best

Runs the browser test (tests/test_browser.py: Debian chromium driven by Playwright, a few minutes)
with CAPTIONER_SCREENSHOTS_DIR pointing at a temporary folder, and copies the two screenshots it
takes to docs/. The test on its own never writes into docs/; this script is the one way the
committed screenshots change. Nothing is copied unless the test passed and took both screenshots
(it is skipped, and this script fails, when /usr/bin/chromium or playwright is missing).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCREENSHOTS = ("studio-caption.png", "studio-gallery.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", metavar="DIR",
                   help="model folder the studio shows (default: the test's choice: the shipped model when installed)")
    p.add_argument("--docs", metavar="DIR", default=str(DOCS), help="where the screenshots go (default: docs/)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="captioner-screenshots-") as tmp:
        env = dict(os.environ, CAPTIONER_SCREENSHOTS_DIR=tmp)
        if args.model:
            env["CAPTIONER_STUDIO_TEST_MODEL"] = str(Path(args.model).resolve())
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "tests/test_browser.py"]
        print("running", " ".join(cmd), f"(CAPTIONER_SCREENSHOTS_DIR={tmp})", flush=True)
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
        if rc != 0:
            print(f"the browser test failed (exit {rc}): docs/ left as it is", file=sys.stderr)
            return rc or 1
        missing = [name for name in SCREENSHOTS if not (Path(tmp) / name).is_file()]
        if missing:
            print(f"no {', '.join(missing)} taken (was the test skipped? see above): docs/ left as it is",
                  file=sys.stderr)
            return 1
        dest = Path(args.docs)
        dest.mkdir(parents=True, exist_ok=True)
        for name in SCREENSHOTS:
            shutil.copyfile(Path(tmp) / name, dest / name)
            print(f"wrote {dest / name} ({(dest / name).stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
