"""Self-critical sequence training (Rennie et al. 2017): REINFORCE on the CIDEr-D of sampled
captions, with a baseline so that only captions better than usual are reinforced.

Starts from a model trained with teacher forcing (`captioner train`) and works on cached encoder
features (frozen backbone). For each image it samples `samples` captions; the baseline is either
the mean reward of the image's other samples ("mean", Luo 2020) or the reward of its greedy
caption ("greedy", the original paper). Captions are sampled from the model as it decodes (dropout
off) unless `sample_dropout`. What it did for the shipped model is in weights/README.md. Each epoch
visits the training images in an order that depends only on the seed and the epoch. Validation
(real beam search, every `val_every` batches) keeps the model with the best validation CIDEr in
OUT/best/; the loop itself (resume, log, checkpoints) is `captioner.training.loop`.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from captioner.data.dataset import CaptionDataset
from captioner.data.features import FeatureCache
from captioner.decoding.config import DecodingConfig
from captioner.decoding.processors import apply_rules, decoding_rules
from captioner.decoding.search import greedy_decode
from captioner.decoding.step_decoder import StepDecoder
from captioner.evaluation.cider import CiderD
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab, tokenize
from captioner.training.config import SCSTConfig
from captioner.training.loop import FeatureSource, Job, Run, run_training


def sample_captions(decoder: StepDecoder, feats: torch.Tensor, vocab: Vocab, n: int, max_len: int):
    """Sample n captions per image (rows image-major). Returns word ids (B*n, T), the log-probability
    of each sampled word (B*n, T) with gradients, and a mask of the words that count (up to and
    including `<end>`). Special tokens other than `<end>` are never sampled; `<end>` is not allowed
    as the first word (as in decoding)."""
    feats = decoder.flatten(feats).repeat_interleave(n, dim=0)
    proj = decoder.project(feats)
    h, c = decoder.init_state(feats)
    rows = feats.shape[0]
    rules = decoding_rules(vocab)
    words = torch.full((rows,), vocab.start_id, dtype=torch.long, device=feats.device)
    done = torch.zeros(rows, dtype=torch.bool, device=feats.device)
    ids, logps, masks = [], [], []
    for t in range(max_len):
        logp, h, c, _ = decoder.step(feats, proj, words, h, c)
        seqs = torch.stack(ids, 1) if ids else words.new_zeros(rows, 0)
        logp = torch.log_softmax(apply_rules(rules, logp, seqs, t), dim=1)
        with torch.no_grad():
            words = torch.multinomial(logp.exp(), 1).squeeze(1)
        masks.append(~done)
        ids.append(words)
        logps.append(logp.gather(1, words.unsqueeze(1)).squeeze(1))
        done = done | (words == vocab.end_id)
        if bool(done.all()):
            break
    return torch.stack(ids, 1), torch.stack(logps, 1), torch.stack(masks, 1).float()


def scst_loss(logps: torch.Tensor, mask: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """REINFORCE: -advantage x log-probability of each sampled word, averaged over the words."""
    return -(advantage.unsqueeze(1) * logps * mask).sum() / mask.sum().clamp(min=1)


def rewards(scorer: CiderD, vocab: Vocab, ids, image_ids: list[str], refs: dict) -> torch.Tensor:
    """CIDEr-D of each decoded row (a tensor or lists of word ids) against its image's references
    (rows image-major, the same number per image)."""
    rows = ids.tolist() if torch.is_tensor(ids) else list(ids)
    per_image = len(rows) // len(image_ids)
    out = [scorer.score(vocab.decode(row), refs[image_ids[r // per_image]], key=image_ids[r // per_image])
           for r, row in enumerate(rows)]
    return torch.tensor(out)


class SCSTJob(Job):
    metric, best_key, stat, stat_line = "cider", "best_cider", "reward", "mean reward {:.3f}"
    log_header = ["step", "epoch", "mean_reward", "val_bleu4", "val_cider", "seconds"]
    config_file = "scst_config.json"
    distributed = False

    def __init__(self, dataset: CaptionDataset, cache: FeatureCache, init_from: str | Path, cfg: SCSTConfig):
        self.dataset, self.cache, self.init_from, self.cfg = dataset, cache, init_from, cfg

    def build(self, run: Run) -> None:
        cfg = self.cfg
        self.model = CaptionModel.load(self.init_from, with_encoder=False).to(run.device)
        self.source = FeatureSource(self.model, self.dataset, self.cache, run.device)
        self.train_ids = self.dataset.split("train")
        self.val_ids = self.dataset.split("val")[: cfg.val_images or None]
        self.source.preload(sorted(set(self.train_ids) | set(self.val_ids)))
        self.refs = {i: [tokenize(c) for c in self.dataset.captions[i]] for i in self.train_ids}
        self.scorer = CiderD(self.refs.values())
        self.n_batches = math.ceil(len(self.train_ids) / cfg.images_per_batch)
        self.total_steps = cfg.epochs * self.n_batches
        self.val_every = cfg.val_every or self.n_batches

    def trainable(self) -> torch.nn.Module:
        return self.model.decoder

    def param_groups(self) -> list[dict]:
        return [{"params": self.model.decoder.parameters(), "lr": self.cfg.lr}]

    def initial_state(self) -> dict:
        return {"step": 0, "best_cider": -1.0}

    def run_config(self) -> dict:
        return {"init_from": str(self.init_from), "scst": super().run_config()}

    def finished(self, state: dict) -> bool:
        return state["step"] >= self.total_steps

    def period(self, state: dict, run: Run) -> list:
        """The batches up to the next validation (every `val_every` steps, and at the end); an epoch's
        order depends only on the seed and the epoch, so a resumed run sees the same batches."""
        first, last = state["step"], self._next_validation(state["step"])
        size, orders, batches = self.cfg.images_per_batch, {}, []
        for step in range(first, last):
            epoch, b = divmod(step, self.n_batches)
            if epoch not in orders:
                orders[epoch] = list(self.train_ids)
                random.Random(self.cfg.seed + epoch).shuffle(orders[epoch])
            batches.append(orders[epoch][b * size : (b + 1) * size])
        return batches

    def _next_validation(self, step: int) -> int:
        return min((step // self.val_every + 1) * self.val_every, self.total_steps)

    def describe(self, state: dict) -> str:
        first, last = state["step"] + 1, self._next_validation(state["step"])
        return f"SCST step{f's {first}-' if last > first else ' '}{last}/{self.total_steps}"

    def loss(self, net, ids: list[str]):
        cfg, decoder, vocab = self.cfg, self.model.decoder, self.model.vocab
        feats = self.source(ids, train=True)
        decoder.train(cfg.sample_dropout)
        words, logps, mask = sample_captions(decoder, feats, vocab, cfg.samples, cfg.max_sample_len)
        r = rewards(self.scorer, vocab, words, ids, self.refs).view(len(ids), cfg.samples)
        if cfg.baseline == "mean":
            base = (r.sum(1, keepdim=True) - r) / (cfg.samples - 1)
        else:
            decoder.eval()
            greedy = [c.ids for c in greedy_decode(decoder, feats, vocab, DecodingConfig(max_len=cfg.max_sample_len))]
            base = rewards(self.scorer, vocab, greedy, ids, self.refs).unsqueeze(1)
            decoder.train(cfg.sample_dropout)
        advantage = (r - base).flatten().to(self.source.device)
        return scst_loss(logps, mask, advantage), float(r.mean())

    def advance(self, state: dict, n_batches: int) -> None:
        state["step"] += n_batches

    def position(self, state: dict) -> tuple[str, list]:
        step, epoch = state["step"], state["step"] / self.n_batches
        return f"step {step} (epoch {epoch:.2f})", [step, f"{epoch:.3f}"]

    def resumed(self, state: dict) -> str:
        return f"at step {state['step']} (best val CIDEr {state['best_cider']:.2f})"

    def finish(self, state: dict, stopped: bool, run: Run) -> dict:
        return {"best_val_cider": state["best_cider"], "steps": state["step"], "best_dir": str(run.out / "best")}


def scst_train(dataset: CaptionDataset, cache: FeatureCache, init_from: str | Path, out_dir: str | Path,
               cfg: SCSTConfig, resume: bool = False) -> dict:
    """Fine-tune the decoder of the model in `init_from` with SCST into `out_dir`. Returns a summary."""
    return run_training(SCSTJob(dataset, cache, init_from, cfg), out_dir, resume)
