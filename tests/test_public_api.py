"""The package's public face: the names `captioner` exports, one family of user errors, typed for checkers."""
from __future__ import annotations

import importlib.resources
import typing
from pathlib import Path

import captioner
from captioner.errors import CaptionerError
from captioner.pipeline import Captioner
from captioner.storage.errors import DuplicateItemError, GalleryError
from captioner.video import VideoResult

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_imports():
    for name in captioner.__all__:
        assert getattr(captioner, name) is not None, name
    assert captioner.VideoResult is VideoResult


def test_caption_video_says_what_it_returns():
    assert typing.get_type_hints(Captioner.caption_video)["return"] is VideoResult


def test_gallery_errors_are_captioner_errors():
    assert issubclass(GalleryError, CaptionerError) and issubclass(DuplicateItemError, CaptionerError)


def test_the_package_is_marked_typed_and_ships_the_marker():
    assert (importlib.resources.files("captioner") / "py.typed").is_file()
    assert '"captioner" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
