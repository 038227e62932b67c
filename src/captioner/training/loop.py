"""The one training loop behind `captioner train` (cross-entropy) and `captioner scst`.

What every run shares lives here: settings validated before anything is written, device, threads
and seed, the optimizer step (Adam, gradient clipping), periods of batches each closed by a
validation with real beam search (the best model kept in OUT/best/), the CSV log OUT/log.csv, an
atomic checkpoint OUT/checkpoint.pt after every validation, resume from it with the RNG state
(python `random`, torch, CUDA) so that a resumed run equals an uninterrupted one, and
DistributedDataParallel under `torchrun` (gloo on CPU, nccl on CUDA).

A `Job` supplies the rest: its model and optimizer parameter groups, the batches of a period, the
loss of one batch, and what a validation changes in its own state (see `CrossEntropyJob`,
`SCSTJob`).
"""
from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from captioner.atomic_write import atomic_path
from captioner.data.dataset import CaptionDataset
from captioner.data.features import FeatureCache
from captioner.decoding.search import decode
from captioner.device import resolve_device
from captioner.errors import CaptionerError, ConfigError
from captioner.evaluation.metrics import score_captions
from captioner.inputs.images import load_for_model
from captioner.model.folder import CaptionModel
from captioner.training.config import RunConfig


def dist_info() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless a process group is initialised (torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class FeatureSource:
    """Where a batch's encoder features come from: the cache, or the live encoder (fine-tuning)."""

    def __init__(self, model: CaptionModel, dataset: CaptionDataset, cache: FeatureCache | None, device):
        self.model, self.dataset, self.cache, self.device = model, dataset, cache, device
        self._mem = None

    def preload(self, ids: list[str]) -> None:
        """Keep these images' cached features in memory (float16)."""
        if self.cache is not None:
            missing = [i for i in ids if i not in self.cache.row]
            if missing:
                raise CaptionerError(f"the feature cache {self.cache.folder} lacks {len(missing)} of the dataset's "
                                     f"images (e.g. {missing[0]}): it was made from another dataset; make one "
                                     "for this one with `captioner prepare`")
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
    """Scores of the model's beam-search captions of these images against their references."""
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


@dataclass
class Run:
    """What the loop shares with a job: where, on what, which process, and the run's RNG and optimizer."""

    out: Path
    device: torch.device
    rank: int
    world: int
    rng: random.Random  # python RNG of the run, saved in every checkpoint
    optimizer: torch.optim.Optimizer | None = None


class Job:
    """One kind of training, as the loop sees it. Subclasses set the attributes and the methods."""

    cfg: RunConfig
    dataset: CaptionDataset
    model: CaptionModel
    source: FeatureSource
    val_ids: list[str]
    metric = "bleu4"  # the validation score that picks OUT/best/
    best_key = "best_bleu4"  # where the state keeps the best score
    stat = "loss"  # the per-batch number shown while training (and averaged over the period)
    stat_line = "loss {:.4f}"  # the period's mean `stat` in the validation line
    log_header: list[str] = []
    config_file = "train_config.json"  # written to the run folder with a fresh log
    tunes_encoder = False  # checkpoints hold the trunk too
    distributed = True  # can run under torchrun

    def build(self, run: Run) -> None:
        """Make the model (after seeding), `source` and `val_ids`; nothing is written yet."""
        raise NotImplementedError

    def trainable(self) -> torch.nn.Module:
        """The module holding every trained parameter; under torchrun it is wrapped in DDP and `loss` calls it."""
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        raise NotImplementedError

    def initial_state(self) -> dict:
        raise NotImplementedError

    def run_config(self) -> dict:
        return asdict(self.cfg)

    def finished(self, state: dict) -> bool:
        raise NotImplementedError

    def period(self, state: dict, run: Run) -> list:
        """The batches up to the next validation."""
        raise NotImplementedError

    def describe(self, state: dict) -> str:
        """Progress bar title for the period starting at `state`."""
        return ""

    def loss(self, net, batch) -> tuple[torch.Tensor, float]:
        """The loss of one batch (with gradients) and the number averaged into the period's `stat`."""
        raise NotImplementedError

    def advance(self, state: dict, n_batches: int) -> None:
        """The period of `n_batches` batches is done."""
        raise NotImplementedError

    def validated(self, state: dict, improved: bool, run: Run) -> bool:
        """Bookkeeping after a validation (on every rank); True stops the run early."""
        return False

    def saved(self, state: dict, run: Run) -> None:
        """Extra files after a validation (rank 0)."""

    def position(self, state: dict) -> tuple[str, list]:
        """Where the run is: the start of the validation line ("epoch 3") and the first cells of its log.csv row."""
        raise NotImplementedError

    def extra(self, run: Run) -> tuple[str, list]:
        """More of the run's state for the validation line (text ending in two spaces) and its log.csv row (cells
        before the seconds); none by default."""
        return "", []

    def report(self, state: dict, mean: float, scores: dict, secs: float, improved: bool, run: Run) -> tuple[str, list]:
        """The printed line and the log.csv row of a validation: where the run is, the period's mean `stat`, the
        validation BLEU-4 and CIDEr, the job's `extra` and the seconds the period took."""
        where, cells = self.position(state)
        extra, extra_cells = self.extra(run)
        bleu4, cider = scores["bleu4"], scores["cider"]
        line = (f"{where}: {self.stat_line.format(mean)}  val BLEU-4 {bleu4:.2f}  CIDEr {cider:.1f}  {extra}"
                f"{secs:.0f}s{'  (best)' if improved else ''}")
        return line, [*cells, f"{mean:.4f}", f"{bleu4:.3f}", f"{cider:.2f}", *extra_cells, f"{secs:.0f}"]

    def resumed(self, state: dict) -> str:
        raise NotImplementedError

    def finish(self, state: dict, stopped: bool, run: Run) -> dict:
        """The run's summary."""
        raise NotImplementedError


def _rng_json(rng: random.Random) -> str:
    version, internal, gauss = rng.getstate()
    return json.dumps([version, list(internal), gauss])


def _checkpoint(job: Job, run: Run, state: dict) -> dict:
    ck = {"decoder": job.model.decoder.state_dict(), "optimizer": run.optimizer.state_dict(), "state": state,
          "rng": _rng_json(run.rng), "torch_rng": torch.get_rng_state()}
    if job.tunes_encoder:
        ck["encoder"] = job.model.encoder.trunk.state_dict()
    if run.device.type == "cuda":
        ck["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    return ck


def _save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp))


def _resume(job: Job, run: Run, path: Path) -> dict:
    """Load a checkpoint into the model, optimizer and RNGs; its state. Reads the older layouts too
    (SCST kept its state as JSON and no python RNG; cross-entropy kept no torch RNG)."""
    try:
        ck = torch.load(path, map_location=run.device, weights_only=True)
        job.model.decoder.load_state_dict(ck["decoder"])
        if "encoder" in ck:
            job.model.encoder.trunk.load_state_dict(ck["encoder"])
        run.optimizer.load_state_dict(ck["optimizer"])
        state = json.loads(ck["state"]) if isinstance(ck["state"], str) else ck["state"]
    except (RuntimeError, KeyError, ValueError, AttributeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaptionerError(f"cannot resume from {path}: {first} (it was made by another kind of run or "
                             "model; use another --out, or leave out --resume to start over)") from None
    if "rng" in ck:
        version, internal, gauss = json.loads(ck["rng"])
        run.rng.setstate((version, tuple(internal), gauss))
    if "torch_rng" in ck:
        torch.set_rng_state(ck["torch_rng"].cpu())
    if "cuda_rng" in ck and run.device.type == "cuda":
        torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), run.device)
    return state


def run_training(job: Job, out_dir: str | Path, resume: bool = False) -> dict:
    """Run `job` into `out_dir` (checkpoint.pt, log.csv, best/); continue from its checkpoint with
    `resume`. Returns the job's summary."""
    cfg = job.cfg.validate()
    rank, world = dist_info()
    if world > 1 and not job.distributed:
        raise ConfigError(f"{type(job).__name__} runs in one process: start it without torchrun")
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run = Run(Path(out_dir), device, rank, world, random.Random(cfg.seed))

    job.build(run)
    module = job.trainable()
    net = module
    if world > 1:  # every trained parameter is in `module`, so DDP all-reduces all their gradients
        net = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    run.optimizer = opt = torch.optim.Adam(job.param_groups())
    params = [p for g in opt.param_groups for p in g["params"]]

    state = job.initial_state()
    ckpt_path = run.out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        state = _resume(job, run, ckpt_path)
        if rank == 0:
            print(f"resumed from {ckpt_path} {job.resumed(state)}")
    log_path = run.out / "log.csv"
    if rank == 0:
        run.out.mkdir(parents=True, exist_ok=True)
        if not (resume and log_path.exists()):
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(job.log_header)
            (run.out / job.config_file).write_text(json.dumps(job.run_config(), indent=2))

    stop = False
    while not job.finished(state) and not stop:
        t0 = time.time()
        job.model.train()  # the encoder's trunk stays in eval mode (frozen batch-norm statistics)
        batches = job.period(state, run)
        total = 0.0
        bar = tqdm(batches, desc=job.describe(state), unit="batch", disable=rank != 0)
        for n, batch in enumerate(bar, 1):
            loss, value = job.loss(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            total += value
            bar.set_postfix({job.stat: f"{total / n:.3f}"}, refresh=False)
        bar.close()
        mean = total / max(len(batches), 1)
        job.advance(state, len(batches))

        score = torch.zeros(1, dtype=torch.float64, device=device)
        if rank == 0:
            scores = validate(job.model, job.source, job.dataset, job.val_ids, cfg.val_beam_size)
            score[0] = scores[job.metric]
        if world > 1:  # every rank keeps the same state (LR decay, early stop) from rank 0's validation
            dist.broadcast(score, 0)
        improved = float(score[0]) > state[job.best_key]
        if improved:
            state[job.best_key] = float(score[0])
        stop = job.validated(state, improved, run)
        if rank == 0:
            if improved:
                job.model.save(run.out / "best")
            job.saved(state, run)
            line, row = job.report(state, mean, scores, time.time() - t0, improved, run)
            print(line, flush=True)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow(row)
            _save_atomic(_checkpoint(job, run, state), ckpt_path)
    return job.finish(state, stop, run)
