"""docs/cli.md is generated from the parser: every option the parser has is documented, and nothing more."""
import re
from pathlib import Path

from captioner.cli.main import build_parser
from captioner.cli.reference import option_strings, walk

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _documented() -> set[str]:
    found, section = set(), None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"## captioner (.+)$", line)
        if heading:
            section = heading.group(1).strip()
            continue
        if section is None:
            continue
        listing = re.match(r"\s{2}(-\w[^ ]*,? )?(--[a-z][a-z0-9-]*)", line)  # an option's own line in --help
        if listing and listing.group(2) != "--help":
            found.add(f"{section} {listing.group(2)}")
        for alias in re.findall(r", (--[a-z][a-z0-9-]*)", line if listing else ""):
            if alias != "--help":
                found.add(f"{section} {alias}")
    return found


def test_every_command_has_a_section():
    text = DOC.read_text(encoding="utf-8")
    for path, _ in walk(build_parser()):
        if path:
            assert f"## captioner {' '.join(path)}\n" in text, f"docs/cli.md lacks 'captioner {' '.join(path)}'"


def test_documented_options_match_the_parser():
    parser_options = option_strings(build_parser())
    documented = _documented()
    missing = sorted(parser_options - documented)
    extra = sorted(documented - parser_options)
    fix = "run: python -m captioner.cli.reference > docs/cli.md"
    assert not missing, f"options not in docs/cli.md ({fix}): {missing}"
    assert not extra, f"docs/cli.md names options the parser lacks ({fix}): {extra}"
