"""Training: teacher forcing on cached features (or live images when fine-tuning), Adam, gradient
clipping, LR decay on plateau and early stopping on validation BLEU-4 from real beam search.
A checkpoint is written every epoch; `resume=True` continues from it. Runs on CPU or CUDA, and
under `torchrun` with DistributedDataParallel (gloo on CPU, nccl on CUDA).
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from captioner.data.dataset import CaptionDataset
from captioner.data.features import FeatureCache
from captioner.decoding.config import DecodingConfig
from captioner.decoding.search import decode
from captioner.device import resolve_device
from captioner.evaluation.metrics import score_captions
from captioner.inputs.images import load_for_model
from captioner.model.config import ModelConfig
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 4e-4
    encoder_lr: float = 1e-4
    grad_clip: float = 5.0
    attention_reg: float = 1.0  # doubly stochastic attention regularisation weight
    label_smoothing: float = 0.0
    min_word_freq: int = 5
    max_caption_len: int = 30
    lr_decay: float = 0.5
    lr_patience: int = 1  # epochs without val improvement before the LR is decayed
    early_stop_patience: int = 4
    keep_epochs: bool = False  # also save every epoch's model to OUT/epoch-N/
    val_beam_size: int = 3
    val_images: int = 0  # 0: the whole validation split
    seed: int = 0
    threads: int = 0  # 0: leave torch's default
    device: str = "auto"


def _dist_info():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def caption_pairs(dataset: CaptionDataset, split: str, vocab: Vocab, max_len: int):
    """(image id, token ids) for every reference caption of every image in the split."""
    return [(i, vocab.encode(c, max_len)) for i in dataset.split(split) for c in dataset.captions[i]]


def pad_batch(seqs: list[list[int]], pad_id: int):
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for n, s in enumerate(seqs):
        out[n, : len(s)] = torch.tensor(s)
    return out, lengths


def caption_loss(logp, alphas, captions, lengths, pad_id, attention_reg, label_smoothing):
    """Cross-entropy on real tokens only, plus the doubly stochastic attention penalty."""
    target = captions[:, 1:]
    mask = target != pad_id
    nll = -logp.gather(2, target.unsqueeze(2)).squeeze(2)
    if label_smoothing > 0:
        smooth = -logp.mean(dim=2)
        nll = (1 - label_smoothing) * nll + label_smoothing * smooth
    loss = (nll * mask).sum() / mask.sum()
    if attention_reg > 0:
        att_sum = (alphas * mask.unsqueeze(2)).sum(dim=1)  # (B, P): attention each cell got over the caption
        loss = loss + attention_reg * ((1.0 - att_sum) ** 2).mean()
    return loss


class FeatureSource:
    """Where a batch's encoder features come from: the cache, or the live encoder (fine-tuning)."""

    def __init__(self, model: CaptionModel, dataset: CaptionDataset, cache: FeatureCache | None, device):
        self.model, self.dataset, self.cache, self.device = model, dataset, cache, device
        self._mem = None

    def preload(self, ids: list[str]) -> None:
        """Keep these images' cached features in memory (float16)."""
        if self.cache is not None:
            self._mem = (dict(zip(ids, range(len(ids)))), self.cache.load(ids))

    def __call__(self, ids: list[str], train: bool) -> torch.Tensor:
        """(B, P, C) features; `train` keeps the gradients of the backbone's fine-tuned blocks."""
        cfg = self.model.cfg
        grad = train and cfg.fine_tune_blocks > 0
        if self.cache is not None:
            if self._mem is not None and all(i in self._mem[0] for i in ids):
                rows = torch.tensor([self._mem[0][i] for i in ids])
                feats = self._mem[1][rows]
            else:
                feats = self.cache.load(ids)
            feats = feats.to(self.device).float()
            n = self.cache.meta.get("before_blocks", 0)
            if not n:
                return feats
            side = self.cache.meta["grid"]  # the trunk before its last n blocks: run those blocks
            x = feats.reshape(len(ids), side, side, -1).permute(0, 3, 1, 2)
            with torch.set_grad_enabled(grad):
                return self.model.encoder.suffix(x, n).flatten(1, 2)
        images = torch.stack([load_for_model(self.dataset.image_path(i), cfg.input_size, self.model.mean, self.model.std)
                              for i in ids]).to(self.device)
        with torch.set_grad_enabled(grad):
            return self.model.encoder(images).flatten(1, 2)


def validate(model: CaptionModel, source: FeatureSource, dataset: CaptionDataset, ids: list[str], beam_size: int,
             batch: int = 100, metrics=("bleu4", "cider")) -> dict:
    model.eval()
    preds = {}
    for s in range(0, len(ids), batch):
        chunk = ids[s : s + batch]
        with torch.inference_mode():
            feats = source(chunk, train=False)
        for i, cands in zip(chunk, decode(model.decoder, feats, model.vocab, model.decoding.replace(beam_size=beam_size))):
            preds[i] = cands[0].caption
    refs = {i: dataset.captions[i] for i in ids}
    return score_captions(preds, refs, metrics=metrics, use_java=False)


def train(dataset: CaptionDataset, out_dir: str | Path, model_cfg: ModelConfig, tcfg: TrainConfig,
          cache: FeatureCache | None = None, resume: bool = False, init_from: str | Path | None = None) -> dict:
    """Train a model into `out_dir` (checkpoint.pt, log.csv, best/ model folder). Returns the summary."""
    out = Path(out_dir)
    rank, world = _dist_info()
    device = resolve_device(tcfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed)
    rng = random.Random(tcfg.seed)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    if init_from:
        model = CaptionModel.load(init_from)
        vocab = model.vocab
        model.cfg.fine_tune_blocks = model_cfg.fine_tune_blocks
        model.encoder.set_fine_tuning(model_cfg.fine_tune_blocks)
    else:
        vocab = Vocab.build((c for i in dataset.split("train") for c in dataset.captions[i]), tcfg.min_word_freq)
        model_cfg.vocab_size = len(vocab)
        model = CaptionModel(model_cfg, vocab, decoding=DecodingConfig(max_len=tcfg.max_caption_len))
    cfg = model.cfg
    if cache is not None and cache.meta.get("before_blocks", 0) != cfg.fine_tune_blocks:
        raise ValueError(f"the feature cache holds the trunk before its last {cache.meta.get('before_blocks', 0)} "
                         f"blocks, but training fine-tunes {cfg.fine_tune_blocks}")
    model.to(device)
    source = FeatureSource(model, dataset, cache, device)

    decoder = model.decoder
    train_decoder = decoder
    if world > 1:
        train_decoder = torch.nn.parallel.DistributedDataParallel(decoder, device_ids=[device.index] if device.type == "cuda" else None)
    groups = [{"params": decoder.parameters(), "lr": tcfg.lr}]
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    if enc_params:
        groups.append({"params": enc_params, "lr": tcfg.encoder_lr})
    opt = torch.optim.Adam(groups)

    pairs = caption_pairs(dataset, "train", vocab, tcfg.max_caption_len)
    val_ids = dataset.split("val")
    if tcfg.val_images:
        val_ids = val_ids[: tcfg.val_images]
    source.preload(sorted(set(dataset.split("train")) | set(val_ids)))

    state = {"epoch": 0, "best_bleu4": -1.0, "bad_epochs": 0, "since_decay": 0}
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        decoder.load_state_dict(ck["decoder"])
        if "encoder" in ck:
            model.encoder.trunk.load_state_dict(ck["encoder"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        version, internal, gauss = json.loads(ck["rng"])
        rng.setstate((version, tuple(internal), gauss))
        if rank == 0:
            print(f"resumed from {ckpt_path} after epoch {state['epoch']} (best val BLEU-4 {state['best_bleu4']:.2f})")
    log_path = out / "log.csv"
    fresh_log = rank == 0 and (not log_path.exists() or not resume)
    if fresh_log:
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(["epoch", "train_loss", "val_bleu4", "val_cider", "lr", "seconds"])
        (out / "train_config.json").write_text(json.dumps({"model": asdict(cfg), "train": asdict(tcfg)}, indent=2))

    stop = False
    while state["epoch"] < tcfg.epochs and not stop:
        epoch = state["epoch"] + 1
        t0 = time.time()
        model.train()  # the encoder's trunk stays in eval mode (frozen batch-norm statistics)
        order = list(range(len(pairs)))
        rng.shuffle(order)
        order = order[rank::world]
        n_batches = math.ceil(len(order) / tcfg.batch_size)
        total, count = 0.0, 0
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}/{tcfg.epochs}", unit="batch", disable=rank != 0)
        for b in bar:
            idx = order[b * tcfg.batch_size : (b + 1) * tcfg.batch_size]
            ids = [pairs[i][0] for i in idx]
            caps, lengths = pad_batch([pairs[i][1] for i in idx], vocab.pad_id)
            feats = source(ids, train=True)
            logp, alphas = train_decoder(feats, caps.to(device), lengths.to(device))
            loss = caption_loss(logp, alphas, caps.to(device), lengths, vocab.pad_id, tcfg.attention_reg, tcfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], tcfg.grad_clip)
            opt.step()
            total += loss.item()
            count += 1
            if b % 20 == 0:
                bar.set_postfix(loss=f"{total / count:.3f}")
        train_loss = total / max(count, 1)

        flags = torch.zeros(2)
        if rank == 0:
            scores = validate(model, source, dataset, val_ids, tcfg.val_beam_size)
            bleu4, cider = scores["bleu4"], scores["cider"]
            improved = bleu4 > state["best_bleu4"]
            if improved:
                state["best_bleu4"], state["bad_epochs"], state["since_decay"] = bleu4, 0, 0
                model.save(out / "best")
            else:
                state["bad_epochs"] += 1
                state["since_decay"] += 1
                if state["since_decay"] >= tcfg.lr_patience:
                    for g in opt.param_groups:
                        g["lr"] *= tcfg.lr_decay
                    state["since_decay"] = 0
            if tcfg.keep_epochs:
                model.save(out / f"epoch-{epoch}")
            lr = opt.param_groups[0]["lr"]
            secs = time.time() - t0
            print(f"epoch {epoch}: loss {train_loss:.4f}  val BLEU-4 {bleu4:.2f}  CIDEr {cider:.1f}  lr {lr:.2e}  "
                  f"{secs:.0f}s{'  (best)' if improved else ''}", flush=True)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([epoch, f"{train_loss:.4f}", f"{bleu4:.3f}", f"{cider:.2f}", f"{lr:.3e}", f"{secs:.0f}"])
            flags[0] = float(state["bad_epochs"] >= tcfg.early_stop_patience)
            flags[1] = lr
        if world > 1:
            dist.broadcast(flags, 0)
            for g in opt.param_groups[:1]:
                g["lr"] = float(flags[1])
        stop = bool(flags[0])
        state["epoch"] = epoch
        if rank == 0:
            ck = {"decoder": decoder.state_dict(), "optimizer": opt.state_dict(), "state": state,
                  "rng": json.dumps([rng.getstate()[0], list(rng.getstate()[1]), rng.getstate()[2]])}
            if cfg.fine_tune_blocks > 0:
                ck["encoder"] = model.encoder.trunk.state_dict()
            torch.save(ck, str(ckpt_path) + ".tmp")
            os.replace(str(ckpt_path) + ".tmp", ckpt_path)
    if rank == 0 and stop:
        print(f"early stop: no val BLEU-4 gain in {tcfg.early_stop_patience} epochs")
    return {"best_val_bleu4": state["best_bleu4"], "epochs": state["epoch"], "best_dir": str(out / "best")}
