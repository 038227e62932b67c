"""The CLI reference (docs/cli.md), generated from the parser itself so it cannot drift from the code.

``python -m captioner.cli.reference > docs/cli.md`` rewrites it; tests/test_cli_reference.py checks that
every command and option of the parser is in the file and that the file names none the parser lacks.
"""
from __future__ import annotations

import argparse
import os
import sys

HEADER = """# CLI reference

Every command and option of `captioner`, as `captioner COMMAND --help` prints them (this file is generated:
`python -m captioner.cli.reference > docs/cli.md`). Decoding options default to the model folder's own
`decoding.json`; errors a user can cause end as one line and exit code 2.
"""


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the parser and each sub-command, depth first."""
    yield path, parser
    for name, child in _subcommands(parser):
        yield from walk(child, path + (name,))


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--flag`` of every command, as ``"gallery export --format"``."""
    found = set()
    for path, p in walk(parser):
        for action in p._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    found.add(" ".join(path + (flag,)))
    return found


def markdown(parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the file should not depend on it
    parts = [HEADER]
    for path, p in walk(parser):
        if not path:
            continue
        parts.append(f"\n## captioner {' '.join(path)}\n\n```text\n{p.format_help().rstrip()}\n```\n")
    return "".join(parts)


def main() -> int:
    from captioner.cli.main import build_parser

    sys.stdout.write(markdown(build_parser()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
