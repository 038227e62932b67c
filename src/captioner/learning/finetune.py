"""Fine-tuning a decoder on the user's edits from stored encoder grids, with forgetting held back
without any training dataset:

- **distillation** (learning without forgetting): on photos the user left as captioned (else the edited
  photos themselves), the KL divergence from the original model's word distributions along its own
  captions, so the model keeps saying what it said where nobody asked it to change;
- an **L2 pull** toward the original weights;
- optionally training only **part of the decoder** (`LearnConfig.train`).

Progress is checkpointed every `checkpoint_every` steps (weights, optimizer, random state): a run that was
killed or interrupted resumes from its last checkpoint when started again with the same edits and settings.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from captioner.atomic_write import atomic_path
from captioner.errors import CaptionerError
from captioner.learning.config import PARTS, LearnConfig
from captioner.model.vocab import Vocab
from captioner.training.cross_entropy import pad_batch


@dataclass
class Pairs:
    """Grids (n, P, C) float16 and token-id captions for teacher forcing."""

    grids: np.ndarray
    captions: list[list[int]]

    def __len__(self) -> int:
        return len(self.captions)

    def batch(self, idx, pad_id: int):
        feats = torch.from_numpy(self.grids[idx].astype(np.float32))
        caps, lengths = pad_batch([self.captions[i] for i in idx], pad_id)
        return feats, caps, lengths


def trainable_parameters(decoder, part: str) -> list[torch.nn.Parameter]:
    """The parameters `part` (a `PARTS` key) trains; the others are frozen (requires_grad False)."""
    prefixes = PARTS[part]
    chosen = []
    for name, p in decoder.named_parameters():
        p.requires_grad_(name.split(".")[0] in prefixes)
        if p.requires_grad:
            chosen.append(p)
    return chosen


def distillation_loss(logp, teacher_logp, captions, pad_id: int, n_old: int):
    """KL(teacher || student) per real token, over the teacher's (original) vocabulary."""
    mask = captions[:, 1:] != pad_id
    p = teacher_logp.exp()
    kl = (p * (teacher_logp - logp[..., :n_old])).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def ce_loss(logp, captions, pad_id: int):
    target = captions[:, 1:]
    mask = target != pad_id
    nll = -logp.gather(2, target.unsqueeze(2)).squeeze(2)
    return (nll * mask).sum() / mask.sum().clamp(min=1)


class Learner:
    """Fine-tunes `decoder` (grown already) on `edits` (Pairs in the grown vocabulary), distilling from
    `teacher` (the original decoder, frozen) on `anchors` (Pairs in the original vocabulary)."""

    def __init__(self, decoder, teacher, vocab: Vocab, n_old: int, edits: Pairs, anchors: Pairs | None,
                 cfg: LearnConfig, work: Path, fingerprint: str):
        self.decoder, self.teacher, self.vocab, self.n_old = decoder, teacher.eval(), vocab, n_old
        self.edits, self.anchors, self.cfg, self.work, self.fingerprint = edits, anchors, cfg, work, fingerprint
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.params = trainable_parameters(decoder, cfg.train)
        # the original weights the L2 pull holds the new ones to (new words' rows: their initial values)
        self.origin = [p.detach().clone() for p in self.params]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)
        self.steps_per_epoch = max(1, -(-len(edits) // cfg.batch_size))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.step = 0
        self.losses: list[float] = []
        self.parts: dict[str, float] = {}

    @property
    def checkpoint_path(self) -> Path:
        return self.work / "checkpoint.pt"

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.edits))

    def _batch_ids(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.steps_per_epoch)
        return self._order(epoch)[k * self.cfg.batch_size : (k + 1) * self.cfg.batch_size]

    def _anchor_ids(self, step: int) -> np.ndarray:
        n = len(self.anchors)
        rng = np.random.default_rng([self.cfg.seed, 10_000_000 + step])
        return rng.choice(n, size=min(n, max(4, self.cfg.batch_size // 2)), replace=False)

    def save_checkpoint(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        ck = {"fingerprint": self.fingerprint, "step": self.step, "decoder": self.decoder.state_dict(),
              "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
              "losses": self.losses}
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(ck, str(tmp))

    def resume(self) -> bool:
        """Continue from the work folder's checkpoint when it was made by the same edits and settings."""
        if not self.checkpoint_path.is_file():
            return False
        try:
            ck = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, ValueError) as exc:
            raise CaptionerError(f"cannot resume from {self.checkpoint_path} ({exc}); delete it to start over") from None
        if ck.get("fingerprint") != self.fingerprint:
            return False
        self.decoder.load_state_dict(ck["decoder"])
        self.optimizer.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        self.step, self.losses = int(ck["step"]), list(ck["losses"])
        return True

    def train_step(self) -> float:
        cfg, pad = self.cfg, self.vocab.pad_id
        self.decoder.train()
        feats, caps, lengths = self.edits.batch(self._batch_ids(self.step), pad)
        logp, _ = self.decoder(feats, caps, lengths)
        loss = ce = ce_loss(logp, caps, pad)
        self.parts = {"ce": float(ce.detach())}
        if cfg.distill > 0 and self.anchors is not None and len(self.anchors):
            feats, caps, lengths = self.anchors.batch(self._anchor_ids(self.step), pad)
            with torch.no_grad():
                teacher_logp, _ = self.teacher(feats, caps, lengths)
            logp, _ = self.decoder(feats, caps, lengths)
            kd = distillation_loss(logp, teacher_logp, caps, pad, self.n_old)
            loss = loss + cfg.distill * kd
            self.parts["kd"] = float(kd.detach())
        if cfg.l2 > 0:
            l2 = sum(((p - o) ** 2).sum() for p, o in zip(self.params, self.origin))
            loss = loss + cfg.l2 * l2
            self.parts["l2"] = float(l2.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def run(self, progress: bool | Callable[[int, int], None] = True) -> None:
        """Train to `total_steps`, checkpointing every `checkpoint_every` steps; on Ctrl-C the progress is
        saved before the interrupt goes on. `progress`: a bar on stderr (True), none (False), or a function
        called with (step, total steps) after each step (the studio's progress)."""
        from tqdm import tqdm

        on_step = progress if callable(progress) else None
        bar = tqdm(total=self.total_steps, initial=self.step, desc="learning", unit="step",
                   disable=on_step is not None or not progress)
        try:
            while self.step < self.total_steps:
                self.train_step()
                bar.update(1)
                if on_step is not None:
                    on_step(self.step, self.total_steps)
                bar.set_postfix({k: f"{v:.3g}" for k, v in self.parts.items()}, refresh=False)
                if self.step % self.cfg.checkpoint_every == 0 and self.step < self.total_steps:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()
            bar.close()
            raise
        bar.close()
        self.decoder.eval()


def frozen_copy(decoder):
    teacher = copy.deepcopy(decoder).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
