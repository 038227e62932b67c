"""The `captioner` command line. Thin: parsing arguments and printing; the work is in the library."""
from captioner.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
