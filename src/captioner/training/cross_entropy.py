"""Cross-entropy training: teacher forcing on cached features (or live images when fine-tuning the
backbone's last blocks), Adam, LR decay on plateau and early stopping on validation BLEU-4 from
real beam search, one validation and checkpoint per epoch. The loop itself (device, seed, resume,
log, best model, checkpoints, torchrun) is `captioner.training.loop`.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from captioner.data.dataset import CaptionDataset
from captioner.data.features import FeatureCache
from captioner.decoding.config import DecodingConfig
from captioner.errors import ConfigError
from captioner.model.config import ModelConfig
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab
from captioner.training.config import TrainConfig
from captioner.training.loop import FeatureSource, Job, Run, run_training


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


class TeacherForcing(nn.Module):
    """Every trained module behind one forward (image ids, captions -> log-probabilities): the decoder
    and the backbone's fine-tuned blocks, so that DistributedDataParallel all-reduces the gradients
    of both and the ranks keep identical weights."""

    def __init__(self, model: CaptionModel, source: FeatureSource):
        super().__init__()
        self.decoder = model.decoder
        n = model.cfg.fine_tune_blocks
        self.tuned_blocks = nn.ModuleList(model.encoder.spec.blocks(model.encoder.trunk)[-n:] if n else [])
        self.source = source

    def forward(self, ids: list[str], captions: torch.Tensor, lengths: torch.Tensor):
        return self.decoder(self.source(ids, train=True), captions, lengths)


class CrossEntropyJob(Job):
    metric, best_key, stat = "bleu4", "best_bleu4", "loss"
    log_header = ["epoch", "train_loss", "val_bleu4", "val_cider", "lr", "seconds"]
    config_file = "train_config.json"

    def __init__(self, dataset: CaptionDataset, model_cfg: ModelConfig, cfg: TrainConfig,
                 cache: FeatureCache | None = None, init_from: str | Path | None = None):
        self.dataset, self.model_cfg, self.cfg, self.cache, self.init_from = dataset, model_cfg, cfg, cache, init_from

    def build(self, run: Run) -> None:
        cfg = self.cfg
        if self.init_from:
            model = CaptionModel.load(self.init_from)
            model.cfg.fine_tune_blocks = self.model_cfg.fine_tune_blocks
            model.encoder.set_fine_tuning(self.model_cfg.fine_tune_blocks)
        else:
            words = (c for i in self.dataset.split("train") for c in self.dataset.captions[i])
            vocab = Vocab.build(words, cfg.min_word_freq)
            self.model_cfg.vocab_size = len(vocab)
            model = CaptionModel(self.model_cfg, vocab, decoding=DecodingConfig(max_len=cfg.max_caption_len))
        have = self.cache.meta.get("before_blocks", 0) if self.cache is not None else None
        if have is not None and have != model.cfg.fine_tune_blocks:
            raise ConfigError(f"the feature cache holds the trunk before its last {have} blocks, but training "
                              f"fine-tunes {model.cfg.fine_tune_blocks}")
        self.model = model.to(run.device)
        self.tunes_encoder = model.cfg.fine_tune_blocks > 0
        self.source = FeatureSource(model, self.dataset, self.cache, run.device)
        self.pairs = caption_pairs(self.dataset, "train", model.vocab, cfg.max_caption_len)
        self.val_ids = self.dataset.split("val")[: cfg.val_images or None]
        self.source.preload(sorted(set(self.dataset.split("train")) | set(self.val_ids)))

    def trainable(self) -> nn.Module:
        return TeacherForcing(self.model, self.source)

    def param_groups(self) -> list[dict]:
        groups = [{"params": self.model.decoder.parameters(), "lr": self.cfg.lr}]
        enc_params = [p for p in self.model.encoder.parameters() if p.requires_grad]
        if enc_params:
            groups.append({"params": enc_params, "lr": self.cfg.encoder_lr})
        return groups

    def initial_state(self) -> dict:
        return {"epoch": 0, "best_bleu4": -1.0, "bad_epochs": 0, "since_decay": 0}

    def run_config(self) -> dict:
        return {"model": asdict(self.model.cfg), "train": asdict(self.cfg)}

    def finished(self, state: dict) -> bool:
        return state["epoch"] >= self.cfg.epochs

    def period(self, state: dict, run: Run) -> list:
        """One epoch: every caption once, shuffled by the run's RNG, this rank's share, in batches."""
        order = list(range(len(self.pairs)))
        run.rng.shuffle(order)
        order = order[run.rank :: run.world]
        size = self.cfg.batch_size
        return [order[s : s + size] for s in range(0, len(order), size)]

    def describe(self, state: dict) -> str:
        return f"epoch {state['epoch'] + 1}/{self.cfg.epochs}"

    def loss(self, net, idx: list[int]):
        device, vocab = self.source.device, self.model.vocab
        ids = [self.pairs[i][0] for i in idx]
        caps, lengths = pad_batch([self.pairs[i][1] for i in idx], vocab.pad_id)
        logp, alphas = net(ids, caps.to(device), lengths.to(device))
        loss = caption_loss(logp, alphas, caps.to(device), lengths, vocab.pad_id, self.cfg.attention_reg,
                            self.cfg.label_smoothing)
        return loss, loss.item()

    def advance(self, state: dict, n_batches: int) -> None:
        state["epoch"] += 1

    def validated(self, state: dict, improved: bool, run: Run) -> bool:
        """LR decay on plateau and early stopping."""
        if improved:
            state["bad_epochs"], state["since_decay"] = 0, 0
        else:
            state["bad_epochs"] += 1
            state["since_decay"] += 1
            if state["since_decay"] >= self.cfg.lr_patience:
                for g in run.optimizer.param_groups:
                    g["lr"] *= self.cfg.lr_decay
                state["since_decay"] = 0
        return state["bad_epochs"] >= self.cfg.patience

    def saved(self, state: dict, run: Run) -> None:
        if self.cfg.keep_epochs:
            self.model.save(run.out / f"epoch-{state['epoch']}")

    def position(self, state: dict) -> tuple[str, list]:
        return f"epoch {state['epoch']}", [state["epoch"]]

    def extra(self, run: Run) -> tuple[str, list]:
        lr = run.optimizer.param_groups[0]["lr"]
        return f"lr {lr:.2e}  ", [f"{lr:.3e}"]

    def resumed(self, state: dict) -> str:
        return f"after epoch {state['epoch']} (best val BLEU-4 {state['best_bleu4']:.2f})"

    def finish(self, state: dict, stopped: bool, run: Run) -> dict:
        if run.rank == 0 and stopped:
            print(f"early stop: no val BLEU-4 gain in {self.cfg.patience} epochs")
        return {"best_val_bleu4": state["best_bleu4"], "epochs": state["epoch"], "best_dir": str(run.out / "best")}


def train(dataset: CaptionDataset, out_dir: str | Path, model_cfg: ModelConfig, tcfg: TrainConfig,
          cache: FeatureCache | None = None, resume: bool = False, init_from: str | Path | None = None) -> dict:
    """Train a model into `out_dir` (checkpoint.pt, log.csv, best/ model folder). Returns the summary."""
    return run_training(CrossEntropyJob(dataset, model_cfg, tcfg, cache, init_from), out_dir, resume)
