"""A captioning model: config + encoder + decoder + vocabulary, saved as one folder.

Folder layout: `config.json` (`ModelConfig`), `decoding.json` (`DecodingConfig`, the model's default
decoding), `vocab.json`, `decoder.safetensors`, and `encoder.safetensors`
only when the backbone was fine-tuned: the weights of its fine-tuned blocks, in float32 (the rest
of the trunk is rebuilt from the backbone's own pretrained weights). A folder may also carry its ONNX
runtime, `encoder.onnx` and `decoder_step.onnx` with `checksums.json` (`save(..., runtime=True)`,
`captioner.runtime.folder_runtime`), which CPU inference then uses directly.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from captioner.decoding.config import DecodingConfig
from captioner.errors import CaptionerError, ModelLoadError
from captioner.model.backbones import get_backbone
from captioner.model.config import ModelConfig, load_configs
from captioner.model.decoder import Decoder
from captioner.model.encoder import Encoder
from captioner.model.vocab import Vocab


def shipped_model_dir() -> Path:
    """The model folder that ships inside the package (`captioner.weights`), found as package data."""
    return Path(str(resources.files("captioner.weights")))


DEFAULT_MODEL_DIR = shipped_model_dir()


def default_model_dir() -> Path:
    """The model used when none is named: $CAPTIONER_MODEL, else the shipped one."""
    return Path(os.environ.get("CAPTIONER_MODEL") or DEFAULT_MODEL_DIR)


def load_model(folder: str | Path | None = None, with_encoder: bool = True) -> CaptionModel:
    """Load a model folder (default: `default_model_dir()`); `ModelLoadError` says what is wrong."""
    if not folder:
        folder = default_model_dir()
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"No captioning model is installed in {folder}. Train one with `captioner train` and pass "
                "--model DIR, or reinstall the package to get the shipped default model.")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ModelLoadError(f"{folder} is a file, not a model folder (pass the folder that holds config.json)")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} is not a model folder: config.json is missing; pass a folder made by "
                             "`captioner train` (it holds config.json, vocab.json, decoder.safetensors)")
    return CaptionModel.load(folder, with_encoder=with_encoder)


def build_decoder(cfg: ModelConfig, feature_dim: int) -> Decoder:
    return Decoder(cfg.vocab_size, feature_dim, cfg.embed_dim, cfg.hidden_dim, cfg.attention_dim, cfg.dropout)


class CaptionModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab: Vocab, encoder: Encoder | None = None, pretrained: bool = True,
                 with_encoder: bool = True, decoding: DecodingConfig | None = None):
        """`with_encoder=False` builds the decoder only (for work on cached features)."""
        super().__init__()
        if cfg.vocab_size != len(vocab):
            raise ModelLoadError(f"the vocabulary has {len(vocab)} words but the config says {cfg.vocab_size}")
        self.cfg, self.vocab = cfg, vocab
        self.decoding = decoding or DecodingConfig()  # the model's default decoding
        self.folder: Path | None = None  # the folder it was loaded from (`load`)
        self.spec = get_backbone(cfg.backbone)
        if encoder is None and with_encoder:
            encoder = Encoder(cfg.backbone, cfg.grid, pretrained=pretrained, fine_tune_blocks=cfg.fine_tune_blocks)
        self.encoder = encoder
        self.decoder = build_decoder(cfg, self.spec.channels)

    @property
    def mean(self):
        return self.spec.mean

    @property
    def std(self):
        return self.spec.std

    def save(self, folder: str | Path, half: bool = False, runtime: bool = False) -> None:
        """Write the model folder. `half` stores weights as float16 (loaded back as float32). `runtime`:
        also its ONNX runtime (`encoder.onnx`, `decoder_step.onnx`, `checksums.json`; needs the encoder and
        the onnx package; a few seconds), which loading it then uses instead of a per-machine export."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.cfg.save(folder / "config.json")
        self.decoding.save(folder / "decoding.json")
        self.vocab.save(folder / "vocab.json")

        def tensors(module):
            return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
                    for k, v in module.state_dict().items()}

        save_file(tensors(self.decoder), str(folder / "decoder.safetensors"), metadata={"format": "pt"})
        if self.cfg.fine_tune_blocks > 0:
            tuned = {k: v.detach().cpu().contiguous() for k, v in self.encoder.tuned_state().items()}
            save_file(tuned, str(folder / "encoder.safetensors"), metadata={"format": "pt"})
        from captioner.runtime.folder_runtime import RUNTIME_FILES

        if runtime:
            from captioner.runtime.folder_export import write_runtime

            write_runtime(self, folder)
        else:  # files of an earlier save would no longer match these weights
            for name in (*RUNTIME_FILES, "checksums.json"):
                (folder / name).unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: str | Path, with_encoder: bool = True) -> CaptionModel:
        """Load a model folder. Raises `ModelLoadError` with what is wrong and what to do.

        A fine-tuned encoder is part of the model's own weights, so it is loaded even with
        `with_encoder=False` (a model saved again then keeps it)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"{folder} is not a model folder: config.json is missing")
        try:
            cfg, decoding = load_configs(folder)
            vocab = Vocab.load(folder / "vocab.json")
        except CaptionerError as exc:
            raise ModelLoadError(str(exc)) from None
        except (OSError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{folder}: cannot read the config or vocabulary ({exc})") from None
        if len(vocab) != cfg.vocab_size:
            raise ModelLoadError(f"{folder}: vocab.json has {len(vocab)} words but the weights were trained with "
                                 f"{cfg.vocab_size}; the vocabulary does not belong to these weights")
        with_encoder = with_encoder or cfg.fine_tune_blocks > 0
        model = cls(cfg, vocab, with_encoder=with_encoder, decoding=decoding)
        _load_into(model.decoder, folder / "decoder.safetensors")
        if with_encoder and cfg.fine_tune_blocks > 0:
            _load_into(model.encoder.trunk, folder / "encoder.safetensors", only=set(model.encoder.tuned_state()))
        model.eval()
        model.folder = folder
        from captioner.runtime.folder_runtime import mark_loaded

        mark_loaded(model, folder)  # its ONNX runtime, if it carries one, is used while the weights stay so
        return model


def _load_into(module: nn.Module, path: Path, only: set | None = None) -> None:
    """Load a safetensors file into `module`: all of its state, or exactly the keys in `only`."""
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; the model folder is incomplete")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is corrupt or not a safetensors file ({exc}); re-copy or re-train the model") from None
    own = module.state_dict()
    if only is not None:
        own = {k: v for k, v in own.items() if k in only}
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    bad = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or bad:
        detail = f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}, wrong shape {bad[:3]}"
        raise ModelLoadError(f"{path} does not match the model described by config.json ({detail})")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=only is None)
