"""Greedy decoding and beam search, batched over images and beams, for any `StepDecoder`.

What may be emitted is decided by the logit processors of `captioner.decoding.processors` (the same
rules for every way of decoding). Scores are sums of the model's log-probabilities of the emitted
tokens (the final `<end>` included when emitted), so a teacher-forced pass over a caption gives the
same number.
"""
from __future__ import annotations

import torch

from captioner.decoding.candidate import Candidate
from captioner.decoding.config import DecodingConfig
from captioner.decoding.processors import TagBonus, apply_rules, apply_steer, decoding_rules
from captioner.decoding.step_decoder import StepDecoder
from captioner.model.vocab import Vocab


def _prepare(decoder: StepDecoder, features: torch.Tensor):
    feats = decoder.flatten(features)
    grid = int(round(feats.shape[1] ** 0.5))
    return feats, decoder.project(feats), grid


def rank_key(score: float, n_tokens: int, length_penalty: float) -> float:
    """Score used to order candidates: summed log-prob / length ** length_penalty."""
    return score / (max(n_tokens, 1) ** length_penalty)


@torch.inference_mode()
def greedy_decode(decoder: StepDecoder, features: torch.Tensor, vocab: Vocab,
                  cfg: DecodingConfig = DecodingConfig(), steer: TagBonus | None = None) -> list[Candidate]:
    """The most likely word at each step, for a batch of images (B, N, N, C) or (B, P, C).
    Uses `cfg.max_len` and `cfg.no_repeat_ngram` (the beam size is 1 by definition). `steer`:
    grounded decoding's bonus (the word is chosen with it; the score stays the model's)."""
    feats, proj, grid = _prepare(decoder, features)
    B = feats.shape[0]
    h, c = decoder.init_state(feats)
    words = torch.full((B,), vocab.start_id, dtype=torch.long, device=feats.device)
    rules = decoding_rules(vocab, cfg.no_repeat_ngram, cfg.no_echo, getattr(cfg, "no_bare_noun", 0),
                           getattr(cfg, "no_bare_subject", 0.0))
    seqs = torch.zeros(B, 0, dtype=torch.long, device=feats.device)
    scores, alphas = torch.zeros(B, dtype=feats.dtype, device=feats.device), []
    done = torch.zeros(B, dtype=torch.bool, device=feats.device)
    for t in range(cfg.max_len):
        logp, h, c, alpha = decoder.step(feats, proj, words, h, c)
        logp = apply_rules(rules, logp, seqs, t)
        if steer is None:
            best, words = logp.max(dim=1)
        else:
            words = apply_steer(steer, logp, seqs, t, torch.arange(B, device=feats.device)).argmax(dim=1)
            best = logp.gather(1, words.unsqueeze(1)).squeeze(1)
        scores += torch.where(done, torch.zeros_like(best), best)
        seqs = torch.cat([seqs, words.unsqueeze(1)], dim=1)
        alphas.append(alpha)
        done |= words == vocab.end_id
        if bool(done.all()):
            break
    alpha_t = torch.stack(alphas, 1)
    out = []
    for b in range(B):
        seq = seqs[b].tolist()
        n = seq.index(vocab.end_id) + 1 if vocab.end_id in seq else len(seq)
        n_words = n - 1 if seq[n - 1] == vocab.end_id else n
        out.append(Candidate(vocab.decode(seq[:n]), seq[:n], float(scores[b]),
                             alpha_t[b, :n_words].reshape(n_words, grid, grid).cpu()))
    return out


@torch.inference_mode()
def beam_search(decoder: StepDecoder, features: torch.Tensor, vocab: Vocab,
                cfg: DecodingConfig = DecodingConfig(), steer: TagBonus | None = None) -> list[list[Candidate]]:
    """The `cfg.beam_size` best distinct captions for each image, best first.

    All live beams of all images advance in one tensor step; beams that emitted `<end>` leave
    the computation. A beam still running at `max_len` becomes a candidate as it is.
    Candidates are ordered by `score / length ** length_penalty` (0: plain summed log-prob).
    With `steer` (grounded decoding) beams are searched with the tag bonus added to their summed
    scores, and candidates are ordered by the model's length-normalised score plus the bonus they
    collected (not normalised by length, so the bonus favours no length); each candidate's `score`
    stays the model's own summed log-probability.
    """
    feats, proj, grid = _prepare(decoder, features)
    B, P, C = feats.shape
    k, max_len, dev = cfg.beam_size, cfg.max_len, feats.device
    rules = decoding_rules(vocab, cfg.no_repeat_ngram, cfg.no_echo, getattr(cfg, "no_bare_noun", 0),
                           getattr(cfg, "no_bare_subject", 0.0))
    V = len(vocab)
    h, c = decoder.init_state(feats)
    # Row r of the live batch belongs to image img_of[r]; start with one row per image.
    img_of = torch.arange(B, device=dev)
    scores = torch.zeros(B, dtype=feats.dtype, device=dev)
    model_scores = scores.clone() if steer is not None else None  # the model's own log-probs (steered search)
    seqs = torch.full((B, 0), vocab.start_id, dtype=torch.long, device=dev)
    alphas = torch.zeros(B, 0, P, dtype=feats.dtype, device=dev)
    words = torch.full((B,), vocab.start_id, dtype=torch.long, device=dev)
    finished: list[list[Candidate]] = [[] for _ in range(B)]
    ranked: dict[int, float] = {}  # id(candidate) -> steered score, for ordering (steered search only)
    slots = [k] * B  # beams each image still needs

    def emit(row_seq, row_alpha, score, ended):
        ids = row_seq.tolist()
        n_words = len(ids) - 1 if ended else len(ids)
        return Candidate(vocab.decode(ids), ids, float(score), row_alpha[:n_words].reshape(n_words, grid, grid).cpu())

    rows_of = None  # the image of each row at the last gather of feats and proj (the same most steps)
    for t in range(max_len):
        if rows_of is None or rows_of.shape != img_of.shape or not torch.equal(rows_of, img_of):
            row_feats, row_proj, rows_of = feats[img_of], proj[img_of], img_of
        logp, h, c, alpha = decoder.step(row_feats, row_proj, words, h, c)
        logp = apply_rules(rules, logp, seqs, t)
        model_logp = logp
        if steer is not None:
            logp = apply_steer(steer, logp, seqs, t, img_of)
        total = scores.unsqueeze(1) + logp  # (R, V)
        # Lay the rows out per image, padded to k rows with -inf, and pick each image's top-k.
        R = total.shape[0]
        counts = torch.bincount(img_of, minlength=B)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(R, device=dev) - starts[img_of]
        width = int(counts.max())
        grid_scores = torch.full((B, width, V), float("-inf"), dtype=total.dtype, device=dev)
        grid_scores[img_of, rank] = total
        top_scores, top_idx = grid_scores.view(B, -1).topk(min(k, width * V), dim=1)
        src_rank, next_word = top_idx // V, top_idx % V
        ts, sr, nw, st = top_scores.tolist(), src_rank.tolist(), next_word.tolist(), starts.tolist()
        new_rows, new_words, new_scores, new_img = [], [], [], []
        for b in range(B):
            need = slots[b]  # live beams this image may keep this step: k minus its finished captions
            for j in range(k):
                if need == 0:
                    break
                s = ts[b][j]
                if s == float("-inf"):
                    break
                row = st[b] + sr[b][j]
                w = nw[b][j]
                if w == vocab.end_id or t == max_len - 1:
                    ended = w == vocab.end_id
                    seq = torch.cat([seqs[row], torch.tensor([w], device=dev)])
                    own = s if steer is None else float(model_scores[row] + model_logp[row, w])
                    cand = emit(seq, torch.cat([alphas[row], alpha[row : row + 1]]), own, ended)
                    finished[b].append(cand)
                    if steer is not None:
                        ranked[id(cand)] = s
                    slots[b] -= 1
                else:
                    new_rows.append(row)
                    new_words.append(w)
                    new_scores.append(s)
                    new_img.append(b)
                need -= 1
        if not new_rows:
            break
        rows = torch.tensor(new_rows, device=dev)
        words = torch.tensor(new_words, device=dev)
        if steer is not None:
            model_scores = model_scores[rows] + model_logp[rows, words]
        scores = torch.tensor(new_scores, dtype=feats.dtype, device=dev)
        img_of = torch.tensor(new_img, device=dev)
        seqs = torch.cat([seqs[rows], words.unsqueeze(1)], dim=1)
        alphas = torch.cat([alphas[rows], alpha[rows].unsqueeze(1)], dim=1)
        h, c = h[rows], c[rows]
    def order(cd: Candidate) -> float:  # the model's ranking, plus the tag bonus the caption collected
        return rank_key(cd.score, len(cd.ids), cfg.length_penalty) + (ranked[id(cd)] - cd.score if ranked else 0.0)

    return [sorted(finished[b], key=order, reverse=True) for b in range(B)]


def decode(decoder: StepDecoder, features: torch.Tensor, vocab: Vocab,
           cfg: DecodingConfig = DecodingConfig(), steer: TagBonus | None = None) -> list[list[Candidate]]:
    """Candidates for each image: greedy for beam size 1 (the same caption beam 1 gives), else beam
    search; `steer`: grounded decoding's per-image word bonus (see `TagBonus`)."""
    if cfg.beam_size <= 1:
        return [[c] for c in greedy_decode(decoder, features, vocab, cfg, steer)]
    return beam_search(decoder, features, vocab, cfg, steer)
