"""`learn`: from edits to a checked, written model folder.

1. the edits' encoder grids: stored ones, else each photo encoded once (kept in the work folder);
2. edits that cannot be learned from are left out, one line each; too few left is an error;
3. with enough edits (`LearnConfig.min_held_out_edits`), some are held out;
4. the vocabulary grows with the new words of the training edits (`vocab_growth`);
5. fine-tuning (`finetune.Learner`), checkpointed in OUT/.learning (a rerun resumes);
6. held-out before/after; a model worse than the original on them is refused (nothing written); the
   confidence calibration is refitted on them where there are enough (`calibration`);
7. once the check passed (`LearnConfig.retrain_all`, the default), the same learning again from every edit,
   held-out ones included, for the written model (checkpointed in OUT/.learning/all; the passed check is
   kept in OUT/.learning/check.json, so a rerun after a kill does not redo it);
8. the model folder (`model_folder.write_model_folder`).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from captioner.atomic_write import write_atomic
from captioner.errors import CaptionerError, DataError
from captioner.learning.calibration import Recalibration, recalibrate
from captioner.learning.config import LearnConfig
from captioner.learning.edits import MIN_EDITS, Edit, encode_missing, usable_edits
from captioner.learning.finetune import Learner, Pairs, frozen_copy
from captioner.learning.heldout import FeatureCaptioner, HeldOutScores, held_out_scores, split_held_out
from captioner.learning.model_folder import WORK_DIR, read_learned, write_model_folder
from captioner.learning.vocab_growth import grow_decoder, new_words_in
from captioner.model.folder import CaptionModel, default_model_dir, load_model

#: at most this many unedited photos are distillation anchors
MAX_ANCHORS = 512
#: the passed held-out check, kept in the work folder while the written model learns from all edits
CHECK_FILE = "check.json"


class LearnRefused(CaptionerError):
    """The learned model was worse than the original on the held-out edits: nothing was written."""


@dataclass
class LearnReport:
    out: str | None
    edits: int
    trained_on: int
    new_words: list[str]
    steps: int
    seconds: float
    held_out: HeldOutScores | None = None
    resumed_from: int = 0
    left_out: list[str] = field(default_factory=list)
    confidence: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["held_out"] = self.held_out.to_dict() if self.held_out else None
        return d


def feature_model_names(base_dir: Path, model: CaptionModel) -> tuple[str, ...]:
    """The model names whose stored features fit this model's encoder: its own, and for a learned model
    the model whose encoder it kept."""
    names = [model.cfg.name]
    info = read_learned(base_dir)
    if info and info.get("feature_model"):
        names.append(str(info["feature_model"]))
    return tuple(dict.fromkeys(names))


def image_encoder(base_dir: Path):
    """`encode(paths)` for `encode_missing`, loading the base model's encoder on first use."""
    state = {}

    def encode(paths: list[str]):
        if "cap" not in state:
            from captioner.pipeline import Captioner

            state["cap"] = Captioner.load(base_dir)
        cap = state["cap"]
        prepared = [cap.prepare(p) for p in paths]
        ok = [p for p in prepared if p.error is None]
        grids = iter(cap.encode(torch.stack([p.pixels for p in ok])).float().numpy()) if ok else iter(())
        out = []
        for p in prepared:
            out.append(p.error if p.error else next(grids))
        return [g if isinstance(g, str) else g.reshape(-1, g.shape[-1]) for g in out]

    return encode


def _fingerprint(base_name: str, edits: list[Edit], cfg: LearnConfig) -> str:
    h = hashlib.sha256(json.dumps([base_name, cfg.fingerprint_fields()]).encode())
    for e in edits:
        h.update(json.dumps([e.key, e.image, e.caption]).encode())
    return h.hexdigest()[:16]


def _pairs(edits: list[Edit], captions: list[list[int]]) -> Pairs:
    return Pairs(np.stack([np.asarray(e.features, dtype=np.float16) for e in edits]), captions)


def _own_captions(model: CaptionModel, grids: list[np.ndarray]) -> list[list[int]]:
    """The model's own caption of each grid (plain beam search, no grounding), as token ids."""
    from captioner.decoding.search import decode
    from captioner.runtime.fused_decoder import InferenceDecoder

    fast = InferenceDecoder(model.decoder.eval())
    plain = model.decoding.replace(tag_bonus=0.0, beam_size=3)
    out = []
    with torch.inference_mode():
        for s in range(0, len(grids), 64):
            feats = torch.from_numpy(np.stack(grids[s : s + 64]).astype(np.float32))
            for cands in decode(fast, feats, model.vocab, plain):
                words = [i for i in cands[0].ids if i != model.vocab.end_id]
                out.append([model.vocab.start_id, *words, model.vocab.end_id])
    return out


def learn(edits: list[Edit], out: str | Path, cfg: LearnConfig | None = None, *, base_dir: str | Path | None = None,
          anchors: list[Edit] | None = None, source: str = "", progress=True, log=None) -> LearnReport:
    """Fine-tune the model at `base_dir` (default: the current one) on `edits` and write the learned
    model folder `out`. `anchors`: photos the user left as captioned (distillation). Raises DataError for
    too few usable edits and `LearnRefused` for a model worse on the held-out edits. `progress`: a bar on
    stderr (True), none (False), or a function called with (stage, done, total), the stage one of
    "encoding", "learning", "checking" and "relearning" (from all edits, after the check passed)."""
    on_progress = progress if callable(progress) else None
    t0 = time.time()
    cfg = (cfg or LearnConfig()).validate()
    log = log or (lambda line: print(line, file=sys.stderr))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    base_dir = Path(base_dir) if base_dir else default_model_dir()
    out = Path(out).expanduser()
    if (out / "config.json").exists():
        raise CaptionerError(f"--out {out} already holds a model; choose another folder")
    base = load_model(base_dir, with_encoder=False)
    from captioner.pipeline import folder_extras

    extras = folder_extras(base_dir)
    work = out / WORK_DIR
    left_out = []
    errors = encode_missing(edits, image_encoder(base_dir), work / "features.npz",
                            progress=(lambda _desc, done, total: on_progress("encoding", done, total)) if on_progress else None)
    left_out += [f"left out: {e}" for e in errors]
    for line in left_out:
        log(line)
    edits = usable_edits([e for e in edits if e.features is not None], base.vocab, warn=lambda s: (log(s), left_out.append(s)))
    if len(edits) < MIN_EDITS:
        raise DataError(f"too few edits to learn from: {len(edits)} usable (at least {MIN_EDITS} needed); "
                        "edit more captions first")
    train_idx, held_idx = split_held_out([e.key for e in edits], cfg.held_out, cfg.min_held_out_edits, cfg.seed)
    train, held = [edits[i] for i in train_idx], [edits[i] for i in held_idx]

    anchor_edits = [a for a in (anchors or []) if a.features is not None][:MAX_ANCHORS]
    anchor_grids = [a.features for a in anchor_edits] or [e.features for e in train]
    anchor_pairs = Pairs(np.stack(anchor_grids).astype(np.float16), _own_captions(base, anchor_grids)) \
        if cfg.distill > 0 else None
    fit = _Fitting(f"{base.cfg.name}+{out.name}"[:120], base, extras, anchor_pairs, cfg, log, progress, on_progress)

    check_file = work / CHECK_FILE
    fingerprint = _fingerprint(base.cfg.name, train + anchor_edits, cfg)
    checked = _read_check(check_file, fingerprint)  # a rerun after the check passed goes on from there
    scores, recal = None, None
    if checked is None:
        learned, words, how, steps, resumed = fit.run(train, work, fingerprint, "learning")
        if held:
            if on_progress:
                on_progress("checking", 0, len(held))
            grids = [e.features for e in held]
            before = FeatureCaptioner(base, extras).captions(grids)
            decoded = FeatureCaptioner(learned, extras).decode(grids)
            scores = held_out_scores(before, [d.caption for d in decoded], [e.caption for e in held])
            if scores.worse:
                shutil.rmtree(work, ignore_errors=True)
                if out.is_dir() and not any(out.iterdir()):
                    out.rmdir()
                raise LearnRefused(
                    f"the learned model is worse than {base.cfg.name} on the {scores.n} held-out edits (CIDEr-D "
                    f"{scores.cider_after:.1f} < {scores.cider_before:.1f}); no model was written")
            recal = recalibrate(extras.get("scorer"), decoded, [e.caption for e in held], [e.caption for e in edits],
                                cfg.calibration_min_edits)
            if cfg.retrain_all:
                _write_check(check_file, fingerprint, scores, recal, len(train), steps)
                (work / "checkpoint.pt").unlink(missing_ok=True)  # the check model is not needed again
    else:
        scores, recal, resumed = checked
        log(f"the held-out check passed already (CIDEr-D {scores.cider_before:.1f} -> {scores.cider_after:.1f} on "
            f"{scores.n} edits); learning from all edits")
    if recal is None:
        recal = Recalibration(None, "too few edits to hold some out, so none to refit it on")
    measured_on = "the written model"
    trained = train
    if held and cfg.retrain_all:  # the check passed: the written model learns from every edit
        learned, words, how, steps, resumed_all = fit.run(
            edits, work / "all", _fingerprint(base.cfg.name, edits + anchor_edits, cfg) + "-all", "relearning")
        resumed = resumed_all or resumed
        trained = edits
        measured_on = (f"a check model learned from the other {len(train)} edits; the written model then learned "
                       f"from all {len(edits)} with the same settings")

    info = {"name": learned.cfg.name, "base_name": base.cfg.name, "base_folder": str(base_dir),
            "feature_model": feature_model_names(base_dir, base)[-1], "source": source,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "edits": len(edits),
            "trained_on": len(trained), "new_words": words, "new_word_init": how, "steps": steps,
            "settings": cfg.fingerprint_fields(),
            "held_out": {**scores.to_dict(), "measured_on": measured_on} if scores else None,
            "confidence": recal.to_dict()}
    write_model_folder(learned, base_dir, out, info, log, calibration=recal.scorer)
    shutil.rmtree(work, ignore_errors=True)
    return LearnReport(str(out), len(edits), len(trained), words, steps, time.time() - t0, scores,
                       resumed, left_out, recal.to_dict())


class _Fitting:
    """One fine-tuning run of `learn` on a set of edits: the vocabulary grown with their new words, the
    decoder trained from the base one (checkpointed in its work folder), the learned `CaptionModel`."""

    def __init__(self, name, base, extras, anchor_pairs, cfg, log, progress, on_progress):
        self.name, self.base, self.extras, self.anchor_pairs = name, base, extras, anchor_pairs
        self.cfg, self.log, self.progress, self.on_progress = cfg, log, progress, on_progress

    def run(self, edits: list[Edit], work: Path, fingerprint: str, stage: str):
        base, cfg, log, on_progress = self.base, self.cfg, self.log, self.on_progress
        decoder = frozen_copy(base.decoder)
        for p in decoder.parameters():
            p.requires_grad_(True)
        words = new_words_in([e.caption for e in edits], base.vocab) if cfg.new_words else []
        extras = self.extras
        proxies = dict(zip(extras["new_words"].words, extras["new_words"].proxies)) if extras.get("new_words") else {}
        vocab, how = grow_decoder(decoder, base.vocab, words, [e.caption for e in edits], proxies)
        edit_pairs = _pairs(edits, [vocab.encode(e.caption, base.decoding.max_len) for e in edits])
        learner = Learner(decoder, base.decoder, vocab, len(base.vocab), edit_pairs, self.anchor_pairs, cfg, work,
                          fingerprint)
        stale = learner.checkpoint_path.is_file()
        resumed = learner.step if learner.resume() else 0
        if resumed:
            log(f"resumed from step {resumed} of {learner.total_steps} ({learner.checkpoint_path})")
        elif stale:
            log(f"{learner.checkpoint_path} was made from other edits or settings: starting over")
        try:
            learner.run((lambda step, total: on_progress(stage, step, total)) if on_progress else self.progress)
        except KeyboardInterrupt:
            log(f"interrupted at step {learner.step} of {learner.total_steps}; progress kept in {work}: run the "
                "same command again to continue")
            raise
        learned = CaptionModel(base.cfg.__class__(**{**asdict(base.cfg), "vocab_size": len(vocab),
                                                     "name": self.name}),
                               vocab, with_encoder=False, decoding=base.decoding)
        learned.decoder = decoder.eval()
        return learned, words, how, learner.total_steps, resumed


def _write_check(path: Path, fingerprint: str, scores: HeldOutScores, recal: Recalibration, trained_on: int,
                 steps: int) -> None:
    """The passed check's figures (and the refitted calibration), so a rerun killed while learning from all
    edits does not learn the check model again."""
    data = {"fingerprint": fingerprint, "scores": asdict(scores), "why": recal.why, "figures": recal.figures,
            "scorer": recal.scorer.to_dict() if recal.scorer else None, "trained_on": trained_on, "steps": steps}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data) + "\n")


def _read_check(path: Path, fingerprint: str):
    """(scores, recalibration, 0) of a passed check of the same edits and settings, else None."""
    from captioner.confidence.calibration import ConfidenceScorer

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return None
    scorer = ConfidenceScorer.from_dict(data["scorer"]) if data.get("scorer") else None
    return HeldOutScores(**data["scores"]), Recalibration(scorer, data["why"], data.get("figures", {})), 0
