"""One config object per model, saved as config.json next to its weights."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass
class ModelConfig:
    backbone: str = "efficientnet-lite2"
    input_size: int = 224  # images are squashed to input_size x input_size (no crop)
    grid: int = 7  # encoder output is grid x grid
    resize: str = "squash-bicubic"
    embed_dim: int = 512
    attention_dim: int = 512
    hidden_dim: int = 512
    dropout: float = 0.5
    vocab_size: int = 0
    fine_tune_blocks: int = 0  # > 0: the encoder's last blocks were trained and are saved with the model
    max_caption_len: int = 30
    length_penalty: float = 0.0  # candidates ranked by score / length ** length_penalty
    no_repeat_ngram: int = 0  # n > 0: never repeat an n-gram within a caption
    default_beam_size: int = 3
    name: str = "captioner"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)} (made by a newer captioner?)")
        return cls(**data)
