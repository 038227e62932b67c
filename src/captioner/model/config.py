"""`ModelConfig`: what a model is (backbone, grid, sizes), saved as config.json next to its weights.

How it decodes is a separate `DecodingConfig` (decoding.json). Model folders made before the split
kept four decoding settings in config.json (`max_caption_len`, `length_penalty`, `no_repeat_ngram`,
`default_beam_size`): `load_configs` still reads them as the model's decoding settings.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from captioner.decoding.config import DecodingConfig
from captioner.errors import ConfigError
from captioner.settings import Settings, setting

#: config.json keys of older model folders -> DecodingConfig fields
LEGACY_DECODING_KEYS = {"max_caption_len": "max_len", "length_penalty": "length_penalty",
                        "no_repeat_ngram": "no_repeat_ngram", "default_beam_size": "beam_size"}


@dataclass
class ModelConfig(Settings):
    backbone: str = setting(
        "efficientnet-lite2", "ImageNet backbone registered in captioner.model.backbones (efficientnet-lite2, "
        "efficientnet-lite0, resnet101, resnet50)")
    input_size: int = setting(224, "images are squashed to this many pixels square", lo=32, hi=1024)
    grid: int = setting(7, "the encoder's output is pooled to GRID x GRID cells", lo=1, hi=32)
    resize: str = setting("squash-bicubic", "how images are resized", choices=("squash-bicubic",), cli=False)
    embed_dim: int = setting(512, "word embedding size", lo=1, hi=4096)
    attention_dim: int = setting(512, "attention layer size", lo=1, hi=4096)
    hidden_dim: int = setting(512, "LSTM state size", lo=1, hi=4096)
    dropout: float = setting(0.5, "dropout before the output layer", lo=0.0, hi=1.0)
    vocab_size: int = setting(0, "words in the vocabulary (set from the training captions)", lo=0, hi=1_000_000,
                              cli=False)
    fine_tune_blocks: int = setting(0, "train the backbone's last BLOCKS blocks too (saved with the model)",
                                    lo=0, hi=16)
    name: str = setting("captioner", "model name stored in its config")

    def check_backbone(self, where: str = "config") -> ModelConfig:
        """Raise `ConfigError` for a backbone the registry lacks (imports torch, so it is not done when the
        config is made: the lean runtime reads configs without torch)."""
        from captioner.model.backbones import BACKBONES

        if self.backbone not in BACKBONES:
            raise ConfigError(f"{where}: unknown backbone {self.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
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
    cfg = ModelConfig.from_dict(data, str(path), "config keys").check_backbone(str(path))
    if (folder / "decoding.json").is_file():
        decoding = DecodingConfig.load(folder / "decoding.json")
    else:
        decoding = DecodingConfig.from_dict(legacy, f"{path} (decoding settings)")
    return cfg, decoding
