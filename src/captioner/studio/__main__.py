"""``python -m captioner.studio``: the studio alone, with the options of ``captioner studio``
(`captioner.cli.studio`), without loading the CLI's other commands."""
from __future__ import annotations

import argparse
import sys

from captioner.cli.studio import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m captioner.studio",
                                     description="Run the captioner studio (a local web app).")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
