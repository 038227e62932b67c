"""Self-critical sequence training (Rennie et al. 2017): REINFORCE on the CIDEr-D of sampled
captions, with a baseline so that only captions better than usual are reinforced.

Starts from a model trained with teacher forcing (`captioner train`) and works on cached encoder
features (frozen backbone). For each image it samples `samples` captions; the baseline is either
the mean reward of the image's other samples ("mean", Luo 2020) or the reward of its greedy
caption ("greedy", the original paper). Captions are sampled from the model as it decodes (dropout
off) unless `sample_dropout`. What it did for the shipped model is in weights/README.md. Validation is real beam search; the model with the best
validation CIDEr is kept in OUT/best/. A checkpoint is written after every validation, and
`resume=True` continues from it.
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
from tqdm import tqdm

from captioner.data.dataset import CaptionDataset
from captioner.data.features import FeatureCache
from captioner.decoding.config import DecodingConfig
from captioner.decoding.processors import apply_rules, decoding_rules
from captioner.decoding.search import greedy_decode
from captioner.decoding.step_decoder import StepDecoder
from captioner.evaluation.cider import CiderD
from captioner.model.folder import CaptionModel
from captioner.model.vocab import Vocab, tokenize
from captioner.device import resolve_device
from captioner.training.cross_entropy import FeatureSource, validate


@dataclass
class SCSTConfig:
    epochs: int = 3
    images_per_batch: int = 50
    samples: int = 5  # captions sampled per image
    baseline: str = "mean"  # "mean" of the image's other samples, or "greedy"
    sample_dropout: bool = False  # sample with dropout active (train mode) or from the model as it decodes
    lr: float = 2e-5
    grad_clip: float = 5.0
    max_sample_len: int = 20
    val_every: int = 0  # batches between validations; 0: once per epoch
    val_beam_size: int = 3
    val_images: int = 0
    seed: int = 0
    threads: int = 0
    device: str = "auto"


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


def scst_train(dataset: CaptionDataset, cache: FeatureCache, init_from: str | Path, out_dir: str | Path,
               cfg: SCSTConfig, resume: bool = False) -> dict:
    """Fine-tune the decoder of the model in `init_from` with SCST into `out_dir`. Returns a summary."""
    if cfg.baseline not in ("mean", "greedy"):
        raise ValueError(f"unknown SCST baseline {cfg.baseline!r}: use 'mean' or 'greedy'")
    if cfg.baseline == "mean" and cfg.samples < 2:
        raise ValueError("the mean-of-samples baseline needs at least 2 samples per image")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    model = CaptionModel.load(init_from, with_encoder=False).to(device)
    vocab, decoder = model.vocab, model.decoder
    source = FeatureSource(model, dataset, cache, device)
    train_ids = dataset.split("train")
    val_ids = dataset.split("val")[: cfg.val_images or None]
    source.preload(sorted(set(train_ids) | set(val_ids)))
    refs = {i: [tokenize(c) for c in dataset.captions[i]] for i in train_ids}
    scorer = CiderD(refs.values())
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)

    n_batches = math.ceil(len(train_ids) / cfg.images_per_batch)
    val_every = cfg.val_every or n_batches
    state = {"step": 0, "best_cider": -1.0}
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        decoder.load_state_dict(ck["decoder"])
        opt.load_state_dict(ck["optimizer"])
        state = json.loads(ck["state"])
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed from {ckpt_path} at step {state['step']} (best val CIDEr {state['best_cider']:.2f})")
    log_path = out / "log.csv"
    if not (resume and log_path.exists()):
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "epoch", "mean_reward", "val_bleu4", "val_cider", "seconds"])
        (out / "scst_config.json").write_text(json.dumps({"init_from": str(init_from), "scst": asdict(cfg)}, indent=2))

    total_steps = cfg.epochs * n_batches
    t0, reward_sum, reward_n = time.time(), 0.0, 0
    bar = tqdm(total=total_steps, initial=state["step"], desc="SCST", unit="batch")
    while state["step"] < total_steps:
        epoch, b = divmod(state["step"], n_batches)
        order = list(train_ids)
        random.Random(cfg.seed + epoch).shuffle(order)  # the same order again after a resume
        ids = order[b * cfg.images_per_batch : (b + 1) * cfg.images_per_batch]
        feats = source(ids, train=True)
        decoder.train(cfg.sample_dropout)
        words, logps, mask = sample_captions(decoder, feats, vocab, cfg.samples, cfg.max_sample_len)
        r = rewards(scorer, vocab, words, ids, refs).view(len(ids), cfg.samples)
        if cfg.baseline == "mean":
            base = (r.sum(1, keepdim=True) - r) / (cfg.samples - 1)
        else:
            decoder.eval()
            greedy = [c.ids for c in greedy_decode(decoder, feats, vocab, DecodingConfig(max_len=cfg.max_sample_len))]
            base = rewards(scorer, vocab, greedy, ids, refs).unsqueeze(1)
            decoder.train(cfg.sample_dropout)
        advantage = (r - base).flatten().to(device)
        loss = scst_loss(logps, mask, advantage)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), cfg.grad_clip)
        opt.step()
        state["step"] += 1
        reward_sum += float(r.mean())
        reward_n += 1
        bar.update(1)
        bar.set_postfix(reward=f"{reward_sum / reward_n:.3f}")

        if state["step"] % val_every == 0 or state["step"] == total_steps:
            scores = validate(model, source, dataset, val_ids, cfg.val_beam_size)
            improved = scores["cider"] > state["best_cider"]
            if improved:
                state["best_cider"] = scores["cider"]
                model.save(out / "best")
            secs = time.time() - t0
            print(f"\nstep {state['step']} (epoch {state['step'] / n_batches:.2f}): mean reward {reward_sum / reward_n:.3f}  "
                  f"val BLEU-4 {scores['bleu4']:.2f}  CIDEr {scores['cider']:.1f}  {secs:.0f}s"
                  f"{'  (best)' if improved else ''}", flush=True)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([state["step"], f"{state['step'] / n_batches:.3f}", f"{reward_sum / reward_n:.4f}",
                                        f"{scores['bleu4']:.3f}", f"{scores['cider']:.2f}", f"{secs:.0f}"])
            ck = {"decoder": decoder.state_dict(), "optimizer": opt.state_dict(), "state": json.dumps(state),
                  "torch_rng": torch.get_rng_state()}
            torch.save(ck, str(ckpt_path) + ".tmp")
            os.replace(str(ckpt_path) + ".tmp", ckpt_path)
            t0, reward_sum, reward_n = time.time(), 0.0, 0
    bar.close()
    return {"best_val_cider": state["best_cider"], "steps": state["step"], "best_dir": str(out / "best")}
