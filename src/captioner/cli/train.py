"""`captioner prepare | train | scst`: feature caches and training."""
from __future__ import annotations

import json
from pathlib import Path

from captioner.cli.common import DATA_HELP
from captioner.data.features import open_feature_cache
from captioner.errors import CaptionerError


def cmd_prepare(args) -> int:
    import torch

    from captioner.data import load_dataset
    from captioner.data.features import build_feature_cache, finish_feature_cache
    from captioner.model.encoder import Encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data, args.image_dir)
    if args.model:  # the features of a model whose backbone was fine-tuned
        from captioner.model.folder import CaptionModel

        model = CaptionModel.load(args.model)
        if model.cfg.fine_tune_blocks == 0:
            raise CaptionerError(f"{args.model} uses the pretrained backbone as it is: prepare its features "
                                 "with --backbone/--input-size/--grid instead of --model")
        enc = model.encoder
        if args.from_cache:
            cache = finish_feature_cache(enc, open_feature_cache(
                args.from_cache, model.cfg.backbone, model.cfg.input_size, None,
                "it must be made from the same backbone and input size", before_blocks=model.cfg.fine_tune_blocks),
                args.cache)
        else:
            cache = build_feature_cache(enc.to(memory_format=torch.channels_last), ds, args.cache,
                                        model.cfg.input_size, batch_size=args.batch_size, fine_tuned=True)
    else:
        enc = Encoder(args.backbone, args.grid).to(memory_format=torch.channels_last)
        cache = build_feature_cache(enc, ds, args.cache, args.input_size, batch_size=args.batch_size,
                                    before_blocks=args.before_blocks)
    m = cache.meta
    kind = f", the trunk before its last {args.before_blocks} blocks" if args.before_blocks else ""
    print(f"feature cache ready: {args.cache} ({len(cache.ids)} images, {m['grid']}x{m['grid']}x{m['channels']}{kind})")
    return 0


def cmd_train(args) -> int:
    import os

    from captioner.data import load_dataset
    from captioner.model.config import ModelConfig
    from captioner.training.cross_entropy import TrainConfig, train

    ds = load_dataset(args.data, args.image_dir)
    cache = None
    if args.cache:
        cache = open_feature_cache(args.cache, args.backbone, args.input_size,
                                    None if args.fine_tune_blocks else args.grid,
                                    "pass matching --backbone/--input-size/--grid", before_blocks=args.fine_tune_blocks)
    mcfg = ModelConfig(backbone=args.backbone, input_size=args.input_size, grid=args.grid,
                       embed_dim=args.embed_dim, attention_dim=args.attention_dim, hidden_dim=args.hidden_dim,
                       dropout=args.dropout, fine_tune_blocks=args.fine_tune_blocks, name=args.name)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, encoder_lr=args.encoder_lr,
                       attention_reg=args.attention_reg, label_smoothing=args.label_smoothing,
                       min_word_freq=args.min_word_freq, early_stop_patience=args.patience,
                       lr_patience=args.lr_patience, lr_decay=args.lr_decay, keep_epochs=args.keep_epochs,
                       val_beam_size=args.val_beam_size, val_images=args.val_images, seed=args.seed,
                       threads=args.threads, device=args.device)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    try:
        summary = train(ds, args.out, mcfg, tcfg, cache=cache, resume=args.resume, init_from=args.init_from)
    finally:
        if distributed:
            dist.destroy_process_group()
    print(json.dumps(summary))
    return 0


def cmd_scst(args) -> int:
    from captioner.data import load_dataset
    from captioner.model.config import ModelConfig
    from captioner.training.scst import SCSTConfig, scst_train

    ds = load_dataset(args.data, args.image_dir)
    mcfg = ModelConfig.load(Path(args.init_from) / "config.json")
    fingerprint = None
    if mcfg.fine_tune_blocks:
        from captioner.model.folder import CaptionModel

        fingerprint = CaptionModel.load(args.init_from).encoder.fingerprint()
    cache = open_feature_cache(args.cache, mcfg.backbone, mcfg.input_size, mcfg.grid,
                                f"the model in {args.init_from} needs {mcfg.backbone} at {mcfg.input_size}px, grid {mcfg.grid}",
                                encoder=fingerprint)
    cfg = SCSTConfig(epochs=args.epochs, images_per_batch=args.images_per_batch, samples=args.samples,
                     baseline=args.baseline, sample_dropout=args.sample_dropout, lr=args.lr,
                     max_sample_len=args.max_sample_len, val_every=args.val_every, val_beam_size=args.val_beam_size,
                     val_images=args.val_images, seed=args.seed, threads=args.threads, device=args.device)
    print(json.dumps(scst_train(ds, cache, args.init_from, args.out, cfg, resume=args.resume)))
    return 0



def register(sub) -> None:
    d = sub.add_parser("prepare", help="compute the encoder feature cache for a dataset",
                       description="Encode every image of a dataset once with the frozen backbone and store the "
                                   "features (float16) for training. Interrupted runs resume.")
    d.add_argument("--data", required=True, help=DATA_HELP)
    d.add_argument("--image-dir", help="image folder for a Karpathy JSON")
    d.add_argument("--cache", required=True, metavar="DIR", help="folder for the features")
    d.add_argument("--backbone", default="efficientnet-lite2")
    d.add_argument("--input-size", type=int, default=224)
    d.add_argument("--grid", type=int, default=7)
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--threads", type=int, default=0)
    d.add_argument("--before-blocks", type=int, default=0, metavar="N",
                   help="store the trunk's output before its last N blocks, for `train --fine-tune-blocks N`")
    d.add_argument("--model", metavar="DIR", help="encode with this model's fine-tuned backbone instead")
    d.add_argument("--from-cache", metavar="DIR",
                   help="with --model: start from a --before-blocks cache instead of the images (much faster)")
    d.set_defaults(func=cmd_prepare)

    t = sub.add_parser("train", help="train a captioning model",
                       description="Train the attention decoder (and optionally the backbone's last blocks) with "
                                   "teacher forcing; early stopping on validation BLEU-4 from beam search. Writes "
                                   "OUT/checkpoint.pt every epoch, OUT/log.csv, and the best model to OUT/best/. "
                                   "Use torchrun for several processes/GPUs.")
    t.add_argument("--data", required=True, help=DATA_HELP)
    t.add_argument("--image-dir", help="image folder for a Karpathy JSON")
    t.add_argument("--cache", metavar="DIR", help="feature cache from `captioner prepare` (with --fine-tune-blocks N: "
                                                   "one made with --before-blocks N)")
    t.add_argument("--out", required=True, metavar="DIR", help="run folder")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--init-from", metavar="DIR", help="start from this model folder (e.g. to fine-tune the backbone)")
    t.add_argument("--name", default="captioner", help="model name stored in its config")
    t.add_argument("--backbone", default="efficientnet-lite2")
    t.add_argument("--input-size", type=int, default=224)
    t.add_argument("--grid", type=int, default=7)
    t.add_argument("--fine-tune-blocks", type=int, default=0, help="train the backbone's last N blocks too")
    t.add_argument("--embed-dim", type=int, default=512)
    t.add_argument("--attention-dim", type=int, default=512)
    t.add_argument("--hidden-dim", type=int, default=512)
    t.add_argument("--dropout", type=float, default=0.5)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=4e-4)
    t.add_argument("--encoder-lr", type=float, default=1e-4)
    t.add_argument("--attention-reg", type=float, default=1.0, help="doubly stochastic attention weight")
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--min-word-freq", type=int, default=5)
    t.add_argument("--patience", type=int, default=3, help="epochs without val BLEU-4 gain before stopping")
    t.add_argument("--lr-patience", type=int, default=1,
                   help="epochs without val BLEU-4 gain before the learning rate is multiplied by --lr-decay")
    t.add_argument("--lr-decay", type=float, default=0.5)
    t.add_argument("--keep-epochs", action="store_true", help="also save every epoch's model to OUT/epoch-N/")
    t.add_argument("--val-beam-size", type=int, default=3)
    t.add_argument("--val-images", type=int, default=0, help="validate on the first N val images (0 = all)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("scst", help="fine-tune a trained model with self-critical sequence training (CIDEr reward)",
                       description="Self-critical sequence training: REINFORCE on the CIDEr-D of sampled captions with "
                                   "a mean-of-samples or greedy baseline, on cached features, starting from a model "
                                   "trained with `captioner train`. Keeps the model with the best validation CIDEr "
                                   "(beam search) in OUT/best/; checkpoints after every validation (--resume).")
    r.add_argument("--data", required=True, help=DATA_HELP)
    r.add_argument("--image-dir", help="image folder for a Karpathy JSON")
    r.add_argument("--cache", required=True, metavar="DIR", help="feature cache from `captioner prepare`")
    r.add_argument("--init-from", required=True, metavar="DIR", help="the model folder to start from")
    r.add_argument("--out", required=True, metavar="DIR", help="run folder")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--images-per-batch", type=int, default=50)
    r.add_argument("--samples", type=int, default=5, help="captions sampled per image")
    r.add_argument("--baseline", choices=["mean", "greedy"], default="mean")
    r.add_argument("--sample-dropout", action="store_true", help="sample with dropout on (default: off)")
    r.add_argument("--lr", type=float, default=2e-5)
    r.add_argument("--max-sample-len", type=int, default=20)
    r.add_argument("--val-every", type=int, default=0, help="batches between validations (0 = once per epoch)")
    r.add_argument("--val-beam-size", type=int, default=3)
    r.add_argument("--val-images", type=int, default=0, help="validate on the first N val images (0 = all)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto, cpu, cuda")
    r.set_defaults(func=cmd_scst)

