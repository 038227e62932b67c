"""`captioner prepare | train | scst`: feature caches and training.

The flags of `train` and `scst` are generated from `TrainConfig`, `SCSTConfig` and `ModelConfig`
(cli/dataclass_args.py), so their defaults are written once. Every value, path and cache is checked
before anything is written; what a user can get wrong ends as one line and exit code 2.
"""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

from captioner.cli.common import DATA_HELP, add_command
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.errors import CaptionerError, ConfigError, DataError
from captioner.model.config import ModelConfig
from captioner.settings import max_threads
from captioner.training.config import RunConfig, SCSTConfig, TrainConfig

RUN_FIELDS = tuple(f.name for f in fields(RunConfig))


def check_range(flag: str, value, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{flag} must be between {lo} and {hi}, not {value}")


def load_data(path: str, image_dir: str | None, need: tuple[str, ...] = ()):
    """The dataset at --data (`load_dataset` says in one line what is wrong with a missing or unreadable
    one), refused when it lacks a split training needs."""
    from captioner.data import load_dataset

    ds = load_dataset(path, image_dir)
    for split in need:
        if not ds.splits.get(split):
            raise DataError(f"--data {path} has no {split} images")
    return ds


def open_cache(path: str, *args, **kwargs):
    """`open_feature_cache`, with one line for a cache folder that is unreadable as well as missing or incomplete."""
    from captioner.data.features import open_feature_cache

    try:
        return open_feature_cache(path, *args, **kwargs)
    except CaptionerError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ConfigError(f"--cache {path} is not a readable feature cache ({type(exc).__name__}: {exc}); make it "
                          "again with `captioner prepare`") from None


def model_folder_config(folder: str, flag: str = "--init-from") -> ModelConfig:
    """The ModelConfig of a model folder named by `flag`, or one clear line."""
    p = Path(folder)
    if not p.is_dir():
        raise ConfigError(f"{flag} {folder}: no such folder")
    if not (p / "config.json").is_file():
        raise ConfigError(f"{flag} {folder} is not a model folder (no config.json); pass the best/ folder of "
                          "a `captioner train` run")
    return ModelConfig.load(p / "config.json")


def cmd_prepare(args) -> int:
    import torch

    from captioner.data.features import build_feature_cache, finish_feature_cache

    check_range("--batch-size", args.batch_size, 1, 4096)
    check_range("--threads", args.threads, 0, max_threads())
    if args.model:
        model_folder_config(args.model, "--model")
    else:
        ModelConfig(backbone=args.backbone, input_size=args.input_size, grid=args.grid).check_backbone(
            "captioner prepare")
        check_range("--before-blocks", args.before_blocks, 0, 16)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_data(args.data, args.image_dir)
    if args.model:  # the features of a model whose backbone was fine-tuned
        from captioner.model.folder import CaptionModel

        model = CaptionModel.load(args.model)
        if model.cfg.fine_tune_blocks == 0:
            raise CaptionerError(f"{args.model} uses the pretrained backbone as it is: prepare its features "
                                 "with --backbone/--input-size/--grid instead of --model")
        enc = model.encoder
        if args.from_cache:
            cache = finish_feature_cache(enc, open_cache(
                args.from_cache, model.cfg.backbone, model.cfg.input_size, None,
                "it must be made from the same backbone and input size", before_blocks=model.cfg.fine_tune_blocks),
                args.cache)
        else:
            cache = build_feature_cache(enc.to(memory_format=torch.channels_last), ds, args.cache,
                                        model.cfg.input_size, batch_size=args.batch_size, fine_tuned=True)
    else:
        from captioner.model.encoder import Encoder

        enc = Encoder(args.backbone, args.grid).to(memory_format=torch.channels_last)
        cache = build_feature_cache(enc, ds, args.cache, args.input_size, batch_size=args.batch_size,
                                    before_blocks=args.before_blocks)
    m = cache.meta
    kind = f", the trunk before its last {args.before_blocks} blocks" if args.before_blocks else ""
    print(f"feature cache ready: {args.cache} ({len(cache.ids)} images, {m['grid']}x{m['grid']}x{m['channels']}{kind})")
    return 0


def cmd_train(args) -> int:
    from captioner.device import resolve_device
    from captioner.training.cross_entropy import train

    tcfg = config_from_args(TrainConfig, args)
    mcfg = config_from_args(ModelConfig, args).check_backbone("captioner train")
    resolve_device(tcfg.device)
    arch = mcfg
    if args.init_from:  # its architecture is the model's; only --fine-tune-blocks applies
        arch = model_folder_config(args.init_from)
        arch.fine_tune_blocks = mcfg.fine_tune_blocks
        fix = f"the model in {args.init_from} needs {arch.backbone} at {arch.input_size}px, grid {arch.grid}"
    else:
        fix = "pass matching --backbone/--input-size/--grid"
    ds = load_data(args.data, args.image_dir, need=("train", "val"))
    cache = None
    if args.cache:
        cache = open_cache(args.cache, arch.backbone, arch.input_size, None if arch.fine_tune_blocks else arch.grid,
                           fix, before_blocks=arch.fine_tune_blocks)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() and tcfg.device != "cpu" else "gloo")
    try:
        summary = train(ds, args.out, mcfg, tcfg, cache=cache, resume=args.resume, init_from=args.init_from)
    finally:
        if distributed:
            dist.destroy_process_group()
    print(json.dumps(summary))
    return 0


def cmd_scst(args) -> int:
    from captioner.device import resolve_device
    from captioner.training.scst import scst_train

    cfg = config_from_args(SCSTConfig, args)
    resolve_device(cfg.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("captioner scst runs in one process: start it without torchrun")
    mcfg = model_folder_config(args.init_from)
    ds = load_data(args.data, args.image_dir, need=("train", "val"))
    fingerprint = None
    if mcfg.fine_tune_blocks:
        from captioner.model.folder import CaptionModel

        fingerprint = CaptionModel.load(args.init_from).encoder.fingerprint()
    cache = open_cache(args.cache, mcfg.backbone, mcfg.input_size, mcfg.grid,
                       f"the model in {args.init_from} needs {mcfg.backbone} at {mcfg.input_size}px, grid {mcfg.grid}",
                       encoder=fingerprint)
    print(json.dumps(scst_train(ds, cache, args.init_from, args.out, cfg, resume=args.resume)))
    return 0


def _data_args(p) -> None:
    """--data and --image-dir, as each command that reads a dataset takes them."""
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--image-dir", help="image folder for a Karpathy JSON")


def _run_folder_args(p) -> None:
    """--out and --resume, as each training command takes them."""
    p.add_argument("--out", required=True, metavar="DIR", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")


def register(sub) -> None:
    d = add_command(sub, "prepare", cmd_prepare, "compute the encoder feature cache for a dataset",
                    """Encode every image of a dataset once with the frozen backbone and store the features
                    (float16) for training. Interrupted runs resume.""")
    _data_args(d)
    d.add_argument("--cache", required=True, metavar="DIR", help="folder for the features")
    d.add_argument("--backbone", default=ModelConfig.backbone, help=ModelConfig.__dataclass_fields__["backbone"].metadata["help"])
    d.add_argument("--input-size", type=int, default=224)
    d.add_argument("--grid", type=int, default=7)
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--threads", type=int, default=0)
    d.add_argument("--before-blocks", type=int, default=0, metavar="N",
                   help="store the trunk's output before its last N blocks, for `train --fine-tune-blocks N`")
    d.add_argument("--model", metavar="DIR", help="encode with this model's fine-tuned backbone instead")
    d.add_argument("--from-cache", metavar="DIR",
                   help="with --model: start from a --before-blocks cache instead of the images (much faster)")

    t = add_command(sub, "train", cmd_train, "train a captioning model",
                    """Train the attention decoder (and optionally the backbone's last blocks) with teacher
                    forcing; early stopping on validation BLEU-4 from beam search. Writes OUT/checkpoint.pt every
                    epoch, OUT/log.csv, and the best model to OUT/best/. Use torchrun for several
                    processes/GPUs.""")
    _data_args(t)
    t.add_argument("--cache", metavar="DIR", help="feature cache from `captioner prepare` (with --fine-tune-blocks N: "
                                                   "one made with --before-blocks N)")
    _run_folder_args(t)
    t.add_argument("--init-from", metavar="DIR", help="start from this model folder (e.g. to fine-tune the backbone)")
    add_dataclass_args(t.add_argument_group("model (with --init-from, only --fine-tune-blocks applies)"), ModelConfig)
    add_dataclass_args(t.add_argument_group("training"), TrainConfig, exclude=RUN_FIELDS)
    add_dataclass_args(t.add_argument_group("run"), RunConfig)

    r = add_command(sub, "scst", cmd_scst,
                    "fine-tune a trained model with self-critical sequence training (CIDEr reward)",
                    """Self-critical sequence training: REINFORCE on the CIDEr-D of sampled captions with a
                    mean-of-samples or greedy baseline, on cached features, starting from a model trained with
                    `captioner train`. Keeps the model with the best validation CIDEr (beam search) in OUT/best/;
                    checkpoints after every validation (--resume).""")
    _data_args(r)
    r.add_argument("--cache", required=True, metavar="DIR", help="feature cache from `captioner prepare`")
    r.add_argument("--init-from", required=True, metavar="DIR", help="the model folder to start from")
    _run_folder_args(r)
    add_dataclass_args(r.add_argument_group("SCST"), SCSTConfig, exclude=RUN_FIELDS)
    add_dataclass_args(r.add_argument_group("run"), RunConfig)
