"""`ModelConfig`: what a model is (backbone, grid, sizes), saved as config.json next to its weights.

How it decodes is a separate `DecodingConfig` (decoding.json). Model folders made before the split
kept four decoding settings in config.json (`max_caption_len`, `length_penalty`, `no_repeat_ngram`,
`default_beam_size`): `load_configs` still reads them as the model's decoding settings.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from captioner.decoding.config import DecodingConfig
from captioner.errors import ConfigError

#: config.json keys of older model folders -> DecodingConfig fields
LEGACY_DECODING_KEYS = {"max_caption_len": "max_len", "length_penalty": "length_penalty",
                        "no_repeat_ngram": "no_repeat_ngram", "default_beam_size": "beam_size"}

_RANGES = {"input_size": (32, 1024), "grid": (1, 32), "embed_dim": (1, 4096), "attention_dim": (1, 4096),
           "hidden_dim": (1, 4096), "vocab_size": (0, 1_000_000), "fine_tune_blocks": (0, 16), "dropout": (0.0, 1.0)}


@dataclass
class ModelConfig:
    backbone: str = field(default="efficientnet-lite2", metadata={
        "help": "ImageNet backbone registered in captioner.model.backbones (efficientnet-lite2, efficientnet-lite0, "
                "resnet101, resnet50)"})
    input_size: int = field(default=224, metadata={"help": "images are squashed to this many pixels square"})
    grid: int = field(default=7, metadata={"help": "the encoder's output is pooled to GRID x GRID cells"})
    resize: str = field(default="squash-bicubic", metadata={"cli": False})
    embed_dim: int = field(default=512, metadata={"help": "word embedding size"})
    attention_dim: int = field(default=512, metadata={"help": "attention layer size"})
    hidden_dim: int = field(default=512, metadata={"help": "LSTM state size"})
    dropout: float = field(default=0.5, metadata={"help": "dropout before the output layer"})
    vocab_size: int = field(default=0, metadata={"cli": False})  # set from the training captions
    fine_tune_blocks: int = field(default=0, metadata={
        "help": "train the backbone's last BLOCKS blocks too (saved with the model)"})
    name: str = field(default="captioner", metadata={"help": "model name stored in its config"})

    def validate(self, where: str = "config") -> ModelConfig:
        """Raise `ConfigError` for a value of the wrong type or out of range (a hand-edited or foreign file)."""
        from captioner.model.backbones import BACKBONES

        for f in fields(self):
            value = getattr(self, f.name)
            want = float if f.type in ("float", float) else int if f.type in ("int", int) else str
            ok = isinstance(value, str) if want is str else (
                isinstance(value, (int, float)) if want is float else isinstance(value, int))
            if isinstance(value, bool) or not ok:
                raise ConfigError(f"{where}: {f.name} must be {'text' if want is str else 'a number'}, not {value!r}")
            if f.name in _RANGES and not _RANGES[f.name][0] <= value <= _RANGES[f.name][1]:
                lo, hi = _RANGES[f.name]
                raise ConfigError(f"{where}: {f.name} must be between {lo} and {hi}, not {value}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"{where}: unknown backbone {self.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
        if self.resize != "squash-bicubic":
            raise ConfigError(f"{where}: unknown resize {self.resize!r} (only 'squash-bicubic')")
        return self

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        return load_configs(Path(path).parent)[0]


def load_optional(folder: str | Path | None, filename: str, parse):
    """``parse(data)`` of the JSON file ``filename`` in a model folder, or None when the folder (or the file)
    is missing, or the file cannot be read or parsed: an optional extra of a model folder (the confidence
    calibration, the new words) is then simply not used."""
    if folder is None:
        return None
    path = Path(folder) / filename
    if not path.is_file():
        return None
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_configs(folder: str | Path) -> tuple[ModelConfig, DecodingConfig]:
    """The model and decoding configs of a model folder (`ConfigError` when unreadable or invalid).

    decoding.json wins; without it, an older folder's decoding keys in config.json are used, and
    the `DecodingConfig` defaults fill what neither has."""
    folder = Path(folder)
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the model config ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    legacy = {new: data.pop(old) for old, new in LEGACY_DECODING_KEYS.items() if old in data}
    unknown = set(data) - {f.name for f in fields(ModelConfig)}
    if unknown:
        raise ConfigError(f"{path}: unknown config keys {sorted(unknown)} (made by a newer captioner?)")
    cfg = ModelConfig(**data).validate(str(path))
    if (folder / "decoding.json").is_file():
        decoding = DecodingConfig.load(folder / "decoding.json")
    else:
        decoding = DecodingConfig.from_dict(legacy, f"{path} (decoding settings)")
    return cfg, decoding
