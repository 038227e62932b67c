"""Command-line flags generated from config dataclasses, so a default is written once (in the dataclass).

A field `beam_size` becomes `--beam-size`, typed from the field's annotation, with the help, the
allowed range and the choices of its `captioner.settings.setting` metadata (the same metadata the
config checks its values against, so a flag out of range is refused by the config it makes, with
one line and exit code 2). `model_default=True` makes every flag default to None ("the model's
value"), for settings a model folder carries (its `DecodingConfig`); `config_from_args` then changes
only the fields the user gave.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from captioner.settings import allowed, field_kind


def add_dataclass_args(parser: argparse.ArgumentParser | Any, cls, *, only: list[str] | None = None,
                       exclude: tuple[str, ...] = (), model_default: bool = False, prefix: str = "") -> None:
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in exclude or f.metadata.get("cli") is False:
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        kind = field_kind(f)[0] or str
        help_text = f.metadata.get("help", "")
        limits = "" if f.metadata.get("choices") or kind in (bool, str) else allowed(f.metadata, kind)
        limits = f"{limits}; " if limits and limits != "a whole number" else ""
        default = None if model_default else f.default
        shown = "the model's" if model_default else f"{f.default!r}" if f.default not in ("", None) else "none"
        choices = f.metadata.get("choices")
        if kind is bool:
            parser.add_argument(flag, dest=prefix.replace("-", "_") + f.name, action=argparse.BooleanOptionalAction,
                                default=default, help=f"{help_text} (default: {shown})")
        else:
            parser.add_argument(flag, dest=prefix.replace("-", "_") + f.name, type=kind, default=default,
                                choices=choices, metavar=None if choices else f.name.split("_")[-1].upper(),
                                help=f"{help_text} ({limits}default: {shown})".strip())


def config_from_args(cls, args: argparse.Namespace, base=None, prefix: str = ""):
    """An instance of `cls` from the parsed flags; with `base`, fields whose flag was not given
    (None) keep `base`'s value."""
    values = {f.name: getattr(args, prefix.replace("-", "_") + f.name) for f in dataclasses.fields(cls)
              if hasattr(args, prefix.replace("-", "_") + f.name)}
    if base is not None:
        return dataclasses.replace(base, **{k: v for k, v in values.items() if v is not None})
    return cls(**values)
