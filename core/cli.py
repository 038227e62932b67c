"""The `captioner` command. Thin: parsing arguments and printing; the work is in core/."""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from .errors import CaptionerError

DATA_HELP = "a Flickr8k folder (with Flickr8k.token.txt and the split lists) or a Karpathy dataset_*.json"


def _add_model_arg(p):
    p.add_argument("--model", metavar="DIR", help="model folder (default: the shipped model in weights/, "
                                                   "or $CAPTIONER_MODEL)")


# ---------------------------------------------------------------- caption
def cmd_caption(args) -> int:
    import torch

    from .folders import already_done, expand_inputs
    from .pipeline import Captioner

    if args.threads:
        torch.set_num_threads(args.threads)
    captioner = Captioner.load(args.model, device=args.device)
    args.beam_size = args.beam_size or captioner.cfg.default_beam_size
    paths = expand_inputs(args.paths)
    out_path = Path(args.out) if args.out else None
    if out_path:
        done = already_done(out_path)
        skipped = len([p for p in paths if p in done])
        paths = [p for p in paths if p not in done]
        if skipped:
            print(f"skipping {skipped} image(s) already captioned in {out_path}", file=sys.stderr)
    if not paths:
        print("nothing to caption" if out_path else "error: no image files given", file=sys.stderr)
        return 0 if out_path else 2
    failed = 0
    sink = _open_sink(out_path) if out_path else None
    bar = None
    if out_path or len(paths) > 1 and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="captioning", file=sys.stderr, disable=len(paths) < 2)
    try:
        for result in captioner.caption_many(paths, args.beam_size, args.max_len, args.batch_size):
            failed += result.error is not None
            if sink:
                sink(result)
            elif args.json:
                print(json.dumps(result.to_dict()), flush=True)
            elif result.error:
                print(f"error: {result.error}", file=sys.stderr)
            else:
                print(f"{result.image}\t{result.caption}" if len(paths) > 1 else result.caption, flush=True)
            if bar:
                bar.update(1)
    finally:
        if bar:
            bar.close()
        if sink:
            sink.close()
    if failed:
        print(f"{failed} of {len(paths)} image(s) could not be captioned", file=sys.stderr)
    return 1 if failed else 0


class _Sink:
    def __init__(self, path: Path):
        new = not path.exists() or path.stat().st_size == 0
        self.path, self.csv = path, path.suffix.lower() == ".csv"
        self.f = open(path, "a", newline="", encoding="utf-8")
        if self.csv:
            self.w = csv.writer(self.f)
            if new:
                self.w.writerow(["image", "caption", "score", "normalized_score", "candidates", "error"])

    def __call__(self, r) -> None:
        if self.csv:
            best = r.candidates[0] if r.candidates else None
            self.w.writerow([r.image, best.caption if best else "", f"{best.score:.6f}" if best else "",
                             f"{best.normalized_score:.6f}" if best else "",
                             json.dumps([c.caption for c in r.candidates]), r.error or ""])
        else:
            self.f.write(json.dumps(r.to_dict()) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _open_sink(path: Path) -> _Sink:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _Sink(path)


# ---------------------------------------------------------------- prepare
def cmd_prepare(args) -> int:
    import torch

    from .data import load_dataset
    from .data.features import build_feature_cache, finish_feature_cache
    from .encoder import Encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data, args.image_dir)
    if args.model:  # the features of a model whose backbone was fine-tuned
        from .model import CaptionModel

        model = CaptionModel.load(args.model)
        if model.cfg.fine_tune_blocks == 0:
            raise CaptionerError(f"{args.model} uses the pretrained backbone as it is: prepare its features "
                                 "with --backbone/--input-size/--grid instead of --model")
        enc = model.encoder
        if args.from_cache:
            cache = finish_feature_cache(enc, _open_feature_cache(
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


# ---------------------------------------------------------------- train
def _open_feature_cache(path, backbone: str, input_size: int, grid: int | None, fix: str, before_blocks: int = 0,
                        encoder: str | None = None):
    """A complete feature cache made for this backbone, input size and grid (None: any), or a clear error.

    `before_blocks`: the cache must hold the trunk before its last that many blocks;
    `encoder`: it must come from the fine-tuned encoder with this fingerprint (None: the pretrained one)."""
    from .data.features import FeatureCache

    cache = FeatureCache(path)
    if not cache.complete:
        raise CaptionerError(f"the feature cache {path} is incomplete: run `captioner prepare` again to finish it")
    m = cache.meta
    if (m["backbone"], m["input_size"]) != (backbone, input_size) or grid is not None and m["grid"] != grid:
        raise CaptionerError(f"the feature cache was made with {m['backbone']} at {m['input_size']}px, "
                             f"grid {m['grid']}; {fix}")
    if m.get("before_blocks", 0) != before_blocks:
        have = f"the trunk before its last {m['before_blocks']} blocks" if m.get("before_blocks") else "whole-trunk features"
        want = (f"the trunk before its last {before_blocks} blocks (`captioner prepare --before-blocks {before_blocks}`)"
                if before_blocks else "whole-trunk features")
        raise CaptionerError(f"the feature cache {path} holds {have}, but this needs {want}")
    if not before_blocks and m.get("encoder") != encoder:
        raise CaptionerError(
            f"the feature cache {path} was made with a different encoder than this model's"
            + (f"; make one with `captioner prepare --model MODEL_DIR --cache NEW_DIR`" if encoder else
               "; use a cache made with `captioner prepare --backbone ...`"))
    return cache


def cmd_train(args) -> int:
    import os

    from .config import ModelConfig
    from .data import load_dataset
    from .train import TrainConfig, train

    ds = load_dataset(args.data, args.image_dir)
    cache = None
    if args.cache:
        cache = _open_feature_cache(args.cache, args.backbone, args.input_size,
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


# ---------------------------------------------------------------- scst
def cmd_scst(args) -> int:
    from .config import ModelConfig
    from .data import load_dataset
    from .scst import SCSTConfig, scst_train

    ds = load_dataset(args.data, args.image_dir)
    mcfg = ModelConfig.load(Path(args.init_from) / "config.json")
    fingerprint = None
    if mcfg.fine_tune_blocks:
        from .model import CaptionModel

        fingerprint = CaptionModel.load(args.init_from).encoder.fingerprint()
    cache = _open_feature_cache(args.cache, mcfg.backbone, mcfg.input_size, mcfg.grid,
                                f"the model in {args.init_from} needs {mcfg.backbone} at {mcfg.input_size}px, grid {mcfg.grid}",
                                encoder=fingerprint)
    cfg = SCSTConfig(epochs=args.epochs, images_per_batch=args.images_per_batch, samples=args.samples,
                     baseline=args.baseline, sample_dropout=args.sample_dropout, lr=args.lr,
                     max_sample_len=args.max_sample_len, val_every=args.val_every, val_beam_size=args.val_beam_size,
                     val_images=args.val_images, seed=args.seed, threads=args.threads, device=args.device)
    print(json.dumps(scst_train(ds, cache, args.init_from, args.out, cfg, resume=args.resume)))
    return 0


# ---------------------------------------------------------------- evaluate
def evaluate_model(model_dir, data, split, beam_size, image_dir=None, cache_dir=None, limit=0, batch_size=50,
                   use_java=None) -> dict:
    """Decode a split with beam search and score it; returns metrics plus timing."""
    import torch

    from .data import load_dataset
    from .decoding import decode
    from .evaluate import score_captions
    from .model import CaptionModel
    from .pipeline import Captioner, load_default_model

    ds = load_dataset(data, image_dir)
    ids = ds.split(split)[: limit or None]
    model = CaptionModel.load(model_dir) if model_dir else load_default_model()
    cfg = model.cfg
    cache = None
    if cache_dir:
        cache = _open_feature_cache(cache_dir, cfg.backbone, cfg.input_size, cfg.grid,
                                    "it does not match this model's backbone/input size/grid",
                                    encoder=model.encoder.fingerprint() if cfg.fine_tune_blocks else None)
    preds, decode_s = {}, 0.0
    captioner = None if cache else Captioner(model)
    for s in range(0, len(ids), batch_size):
        chunk = ids[s : s + batch_size]
        if cache:
            feats = cache.load(chunk).float()
            t = time.perf_counter()
            with torch.inference_mode():
                out = decode(model.decoder, feats, model.vocab, beam_size, cfg.max_caption_len, cfg.length_penalty,
                             cfg.no_repeat_ngram)
            decode_s += time.perf_counter() - t
            for i, cands in zip(chunk, out):
                preds[i] = cands[0].caption
        else:
            t = time.perf_counter()
            for i, r in zip(chunk, captioner.caption_many([ds.image_path(i) for i in chunk], beam_size, batch_size=batch_size)):
                if r.error:
                    raise CaptionerError(r.error)
                preds[i] = r.caption
            decode_s += time.perf_counter() - t
    scores = score_captions(preds, {i: ds.captions[i] for i in ids}, use_java=use_java)
    scores.update(beam_size=beam_size, split=split, seconds_per_image=decode_s / max(len(ids), 1),
                  timed="decoder only (cached features)" if cache else "end to end from image files")
    return {"scores": scores, "predictions": preds}


def cmd_evaluate(args) -> int:
    result = evaluate_model(args.model, args.data, args.split, args.beam_size, args.image_dir, args.cache,
                            args.limit, use_java=False if args.no_java else None)
    scores = result["scores"]
    if args.predictions:
        Path(args.predictions).write_text(json.dumps(result["predictions"], indent=1))
    if args.json:
        print(json.dumps(scores))
    else:
        for k in ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"):
            v = scores.get(k)
            print(f"{k:8s} {'n/a' if v is None else f'{v:.2f}'}")
        print(f"images   {scores['n_images']} ({scores['split']}), beam {scores['beam_size']}, "
              f"{scores['seconds_per_image'] * 1000:.1f} ms/image ({scores['timed']})")
        for m in scores["missing"]:
            print(f"not computed: {m}")
    return 0


# ---------------------------------------------------------------- studio
def cmd_studio(args) -> int:
    from ..gui.app import launch

    launch(model_dir=args.model, gallery_dir=args.gallery, host=args.host, port=args.port, listen=args.listen)
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="captioner", description="Offline image captioning (Show, Attend and Tell).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("caption", help="caption image files or folders",
                       description="Caption images. Folders are searched recursively for image files. "
                                   "Prints the best caption per image; --json prints one JSON object per image; "
                                   "--out writes JSON Lines (.jsonl) or CSV (.csv) and skips images already in it.")
    c.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    c.add_argument("--beam-size", type=int, default=None,
                   help="beams to keep; 1 = greedy (default: the model's default_beam_size, chosen on validation)")
    c.add_argument("--max-len", type=int, default=None, help="maximum words per caption (default: the model's)")
    c.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    c.add_argument("--json", action="store_true", help="JSON Lines on stdout: image, candidates, error")
    c.add_argument("--out", metavar="FILE", help="write results to FILE (.jsonl or .csv); re-running resumes")
    c.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    c.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    _add_model_arg(c)
    c.set_defaults(func=cmd_caption)

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

    e = sub.add_parser("evaluate", help="score a model on a split (BLEU, METEOR, ROUGE-L, CIDEr)",
                       description="Decode a split with beam search and compute BLEU-1..4, METEOR, ROUGE-L and "
                                   "CIDEr with the COCO caption tools against all references. METEOR needs Java.")
    _add_model_arg(e)
    e.add_argument("--data", default=None, help=DATA_HELP + " (default: ../shared/data/flickr8k if present)")
    e.add_argument("--image-dir", help="image folder for a Karpathy JSON")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--beam-size", type=int, default=3)
    e.add_argument("--cache", metavar="DIR", help="use cached encoder features (faster; times the decoder only)")
    e.add_argument("--limit", type=int, default=0, help="only the first N images")
    e.add_argument("--predictions", metavar="FILE", help="also write the captions as JSON")
    e.add_argument("--no-java", action="store_true", help="skip the Java tools (no METEOR)")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("studio", help="open the caption studio (local web app)",
                       description="Start the Gradio caption studio on http://127.0.0.1:PORT.")
    _add_model_arg(s)
    s.add_argument("--gallery", metavar="DIR", help="gallery folder (default: your data directory)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--listen", action="store_true", help="open the studio to the network (0.0.0.0)")
    s.set_defaults(func=cmd_studio)
    return p


def _default_data() -> str | None:
    for cand in (Path.cwd() / ".." / "shared" / "data" / "flickr8k", Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k"):
        if (cand / "Flickr8k.token.txt").exists():
            return str(cand)
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "data", "unset") is None:
        args.data = _default_data()
        if args.data is None:
            print("error: pass --data (a Flickr8k folder or a Karpathy JSON)", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except CaptionerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
