"""Validated settings: one field helper and one base for every config dataclass.

A config dataclass derives from `Settings` and declares each field with `setting(default, help, ...)`,
which stores the field's help and its bounds in the field's metadata. `Settings.__post_init__` checks every
field against them (type, range, choices), so a config that exists is a valid one; the CLI's flags
(cli/dataclass_args.py) and the studio's sliders read their help, bounds and choices from the same metadata.

An out-of-range value raises `SettingError` (a `ConfigError`): one line naming the setting as the user
sets it (``--beam-size must be between 1 and 20, not 30``); `Settings.from_dict` names it by its JSON key
instead, after the file it came from.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, field, fields
from typing import Any, NamedTuple

from captioner.errors import ConfigError

_KINDS = {"int": int, "float": float, "bool": bool, "str": str, int: int, float: float, bool: bool, str: str}


def max_threads() -> int:
    """The most CPU threads a ``--threads`` flag accepts: 4 x this machine's cores."""
    return 4 * (os.cpu_count() or 1)


def setting(default: Any = MISSING, help: str = "", *, lo=None, hi=None, above=None, choices=None,
            special: dict | None = None, step: int | None = None, cli: bool = True):
    """A config field with its help text and the checks `Settings` makes.

    ``lo``/``hi``: inclusive bounds (``hi`` may be a callable, read when checked, e.g. `max_threads`);
    ``above``: an exclusive lower bound; ``choices``: the allowed values; ``special``: values allowed
    outside the range, with what they mean (``{0: "the model's usual"}``); ``step``: the value must be a
    multiple of it; ``cli=False``: no command-line flag."""
    meta = {"help": help, "lo": lo, "hi": hi, "above": above, "choices": tuple(choices) if choices else None,
            "special": dict(special) if special else None, "step": step}
    if not cli:
        meta["cli"] = False
    return field(default=default, metadata=meta)


class Bounds(NamedTuple):
    """A numeric setting's inclusive range (None: open on that side); a slider's minimum and maximum."""
    lo: float | None
    hi: float | None


def _hi(meta) -> float | None:
    """A field's upper bound, read now when it is a callable (`max_threads`)."""
    hi = meta.get("hi")
    return hi() if callable(hi) else hi


def _num(x) -> str:
    """A bound as people write it: 1 rather than 1.0."""
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def allowed(meta: dict, kind: type | None = None) -> str:
    """What a field's metadata allows, in words: ``between 1 and 20``, ``one of mean, greedy``..."""
    if meta.get("choices"):
        want = "one of " + ", ".join(map(str, meta["choices"]))
    else:
        lo, above = meta.get("lo"), meta.get("above")
        hi = _hi(meta)
        if lo is not None and hi is not None:
            want = f"between {_num(lo)} and {_num(hi)}"
        else:
            low = f"at least {_num(lo)}" if lo is not None else f"greater than {_num(above)}" if above is not None else ""
            want = " and ".join(w for w in (low, f"at most {_num(hi)}" if hi is not None else "") if w)
        if meta.get("step"):
            want = f"a multiple of {meta['step']}" + (f" {want}" if want else "")
        elif kind is int and not want:
            want = "a whole number"
    for value, meaning in (meta.get("special") or {}).items():
        want = f"{_shown(value)} ({meaning}) or {want}"
    return want


class SettingError(ConfigError):
    """A setting of the wrong type or out of range. ``str()`` names it by its flag; `for_key` by its key."""

    def __init__(self, name: str, flag: str, want: str, value: Any):
        self.name, self.flag, self.want, self.value = name, flag, want, value
        super().__init__(self.named(flag))

    def named(self, label: str) -> str:
        return f"{label} must be {self.want}, not {_shown(self.value)}"

    def for_key(self, where: str) -> str:
        """The message for a value read from a file: ``decoding.json: beam_size must be ...``."""
        return f"{where}: {self.named(self.name)}"


class Settings:
    """Base of the config dataclasses: each field is checked against its `setting` metadata when the
    config is made (and again by `validate`); a subclass adds rules that tie fields together by
    overriding `validate` (calling ``super().validate()`` first).

    ``flag_prefix`` is put before each flag's name (``"ray-"``: ``--ray-workers``)."""

    flag_prefix = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self):
        """Raise `SettingError` for the first field of the wrong type or out of range; return self."""
        for f in fields(self):
            check_value(f, getattr(self, f.name), self.flag(f.name))
        return self

    @classmethod
    def flag(cls, name: str) -> str:
        """The setting's name as the user sets it: its flag, or ``Class.field`` when it has none."""
        f = cls.__dataclass_fields__[name]
        if f.metadata.get("cli") is False:
            return f"{cls.__name__}.{name}"
        return "--" + cls.flag_prefix + name.replace("_", "-")

    @classmethod
    def bounds(cls, name: str) -> Bounds:
        """A numeric setting's inclusive range (the studio's slider limits)."""
        meta = cls.__dataclass_fields__[name].metadata
        hi = _hi(meta)
        return Bounds(meta["lo"] if meta.get("lo") is not None else meta.get("above"), hi)

    @classmethod
    def from_dict(cls, data: Any, where: str, what: str = "settings"):
        """A config from a JSON object (a saved file): unknown keys and bad values name the file and the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown {what} {sorted(unknown)} (made by a newer captioner?)")
        try:
            return cls(**data)
        except SettingError as exc:
            raise ConfigError(exc.for_key(where)) from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def field_kind(f: dataclasses.Field) -> tuple[type | None, bool]:
    """(the field's type: int, float, bool, str or None for another, whether None is allowed: ``float | None``)."""
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    optional = isinstance(name, str) and name.endswith(" | None")
    return _KINDS.get(name[: -len(" | None")] if optional else f.type), optional


def check_value(f: dataclasses.Field, value: Any, label: str) -> None:
    """Check one field's value against its type and `setting` metadata (`SettingError`)."""
    meta = f.metadata
    kind, optional = field_kind(f)
    if optional and value is None:
        return
    special = meta.get("special") or {}
    if type(value) in (int, float, str) and value in special:
        return
    fail: Callable[[str], SettingError] = lambda want: SettingError(f.name, label, want, value)  # noqa: E731
    if kind is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return
    if kind is str:
        if not isinstance(value, str):
            raise fail("text" if not meta.get("choices") else allowed(meta))
    elif kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
            raise fail("a whole number" if kind is int else "a number")
        if not math.isfinite(value):
            raise fail("a finite number")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise fail(allowed(meta, kind))
    if kind in (int, float):
        lo, above, step = meta.get("lo"), meta.get("above"), meta.get("step")
        hi = _hi(meta)
        if ((lo is not None and value < lo) or (above is not None and value <= above)
                or (hi is not None and value > hi) or (step and value % step)):
            raise fail(allowed(meta, kind))
