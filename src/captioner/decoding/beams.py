"""Greedy decoding and beam search written once, for torch tensors (`captioner.decoding.search`) and numpy
arrays (`captioner.runtime.numpy_search`): the array operations come from `captioner.decoding.arrays`, the
rules (a function of the log-probabilities, the words so far and the step) from the caller. Importing this
module does not import torch.

Scores are sums of the model's log-probabilities of the emitted tokens (the final `<end>` included when
emitted), so a teacher-forced pass over a caption gives the same number.
"""
from __future__ import annotations

from collections.abc import Callable

from captioner.decoding.arrays import arrays_of
from captioner.decoding.candidate import Candidate

Rules = Callable  # (logp (R, V), seqs (R, t), step t) -> logp with the forbidden words at -inf


def rank_key(score: float, n_tokens: int, length_penalty: float) -> float:
    """Score used to order candidates: summed log-prob / length ** length_penalty."""
    return score / (max(n_tokens, 1) ** length_penalty)


def _prepare(decoder, features):
    feats = decoder.flatten(features)
    grid = int(round(feats.shape[1] ** 0.5))
    return feats, decoder.project(feats), grid


def _prior(cfg, vocab, xp):
    """The language-model prior of `cfg` (`captioner.decoding.lm_prior`) as a function (logp, seqs) -> fused
    log-probabilities, or None when it is off."""
    from captioner.decoding.lm_prior import fusion_for

    fusion = fusion_for(cfg, vocab)
    if fusion is None:
        return None
    return lambda logp, seqs: logp + xp.from_numpy(fusion.term(xp.to_numpy(seqs)), logp)


def _candidate(vocab, ids: list[int], score: float, alpha, ended: bool, grid: int, xp) -> Candidate:
    n_words = len(ids) - 1 if ended else len(ids)
    return Candidate(vocab.decode(ids), ids, float(score), xp.host(alpha[:n_words].reshape(n_words, grid, grid)))


def greedy_decode(decoder, features, vocab, cfg, rules: Rules, steer=None) -> list[Candidate]:
    """The most likely word at each step, for a batch of images (B, N, N, C) or (B, P, C).
    Uses `cfg.max_len` (the beam size is 1 by definition). `steer`: grounded decoding's bonus (the word
    is chosen with it; the score stays the model's)."""
    feats, proj, grid = _prepare(decoder, features)
    xp = arrays_of(feats)
    B = feats.shape[0]
    h, c = decoder.init_state(feats)
    words = xp.full((B,), vocab.start_id, feats, "long")
    seqs = xp.full((B, 0), 0, feats, "long")
    scores, alphas = xp.full((B,), 0, feats, feats.dtype), []
    done = xp.full((B,), False, feats, "bool")
    prior = _prior(cfg, vocab, xp)  # the language-model prior (None: off); the score stays the model's
    for t in range(cfg.max_len):
        logp, h, c, alpha = decoder.step(feats, proj, words, h, c)
        logp = rules(logp, seqs, t)
        if steer is None and prior is None:
            best, words = xp.max(logp)
        else:
            fused = logp if prior is None else prior(logp, seqs)
            words = xp.argmax(fused if steer is None else steer(fused, seqs, t, xp.arange(B, feats)))
            best = logp[xp.arange(B, feats), words]
        scores += xp.where(done, 0.0, best)
        seqs = xp.cat([seqs, words[:, None]], 1)
        alphas.append(alpha)
        done |= words == vocab.end_id
        if bool(done.all()):
            break
    alpha_t = xp.stack(alphas, 1)
    out = []
    for b in range(B):
        seq = seqs[b].tolist()
        n = seq.index(vocab.end_id) + 1 if vocab.end_id in seq else len(seq)
        out.append(_candidate(vocab, seq[:n], scores[b], alpha_t[b], seq[n - 1] == vocab.end_id, grid, xp))
    return out


def beam_search(decoder, features, vocab, cfg, rules: Rules, steer=None) -> list[list[Candidate]]:
    """The `cfg.beam_size` best distinct captions for each image, best first.

    All live beams of all images advance in one step; beams that emitted `<end>` leave the computation.
    A beam still running at `max_len` becomes a candidate as it is. Candidates are ordered by
    `score / length ** length_penalty` (0: plain summed log-prob). With `steer` (grounded decoding) beams
    are searched with the tag bonus added to their summed scores, and candidates are ordered by the
    model's length-normalised score plus the bonus they collected (not normalised by length, so the bonus
    favours no length); each candidate's `score` stays the model's own summed log-probability.
    """
    feats, proj, grid = _prepare(decoder, features)
    xp = arrays_of(feats)
    B, P, _ = feats.shape
    k, max_len, V = cfg.beam_size, cfg.max_len, len(vocab)
    prior = _prior(cfg, vocab, xp)  # the language-model prior (None: off)
    steered = steer is not None or prior is not None  # search scores are not the model's own
    h, c = decoder.init_state(feats)
    img_of = xp.arange(B, feats)  # row r of the live batch belongs to image img_of[r]; one row per image first
    scores = xp.full((B,), 0, feats, feats.dtype)
    model_scores = xp.copy(scores) if steered else None  # the model's own log-probs (steered search)
    fused_scores = xp.copy(scores) if prior is not None else None  # the model's with the prior
    fused: dict[int, float] = {}  # id(candidate) -> its score with the prior, for ordering
    seqs = xp.full((B, 0), 0, feats, "long")
    alphas = xp.full((B, 0, P), 0, feats, feats.dtype)
    words = xp.full((B,), vocab.start_id, feats, "long")
    finished: list[list[Candidate]] = [[] for _ in range(B)]
    ranked: dict[int, float] = {}  # id(candidate) -> steered score, for ordering (steered search only)
    slots = [k] * B  # beams each image still needs
    rows_of = None  # the image of each row at the last gather of feats and proj (the same most steps)
    for t in range(max_len):
        if rows_of is None or not xp.equal(rows_of, img_of):
            row_feats, row_proj, rows_of = feats[img_of], proj[img_of], img_of
        logp, h, c, alpha = decoder.step(row_feats, row_proj, words, h, c)
        logp = rules(logp, seqs, t)
        model_logp = logp
        if prior is not None:
            logp = fused_logp = prior(logp, seqs)
        if steer is not None:
            logp = steer(logp, seqs, t, img_of)
        total = scores[:, None] + logp  # (R, V)
        # Lay the rows out per image, padded to k rows with -inf, and pick each image's top-k.
        counts = xp.bincount(img_of, minlength=B)
        starts = xp.cumsum(counts, 0) - counts
        rank = xp.arange(total.shape[0], feats) - starts[img_of]
        width = int(counts.max())
        grid_scores = xp.full((B, width, V), float("-inf"), feats, total.dtype)
        grid_scores[img_of, rank] = total
        top_scores, top_idx = xp.topk(grid_scores.reshape(B, -1), min(k, width * V))
        ts, sr, nw, st = top_scores.tolist(), (top_idx // V).tolist(), (top_idx % V).tolist(), starts.tolist()
        new_rows, new_words, new_scores, new_img = [], [], [], []
        for b in range(B):
            need = slots[b]  # live beams this image may keep this step: k minus its finished captions
            for j in range(len(ts[b])):
                if need == 0:
                    break
                s = ts[b][j]
                if s == float("-inf"):
                    break
                row, w = st[b] + sr[b][j], nw[b][j]
                if w == vocab.end_id or t == max_len - 1:
                    own = s if not steered else float(model_scores[row] + model_logp[row, w])
                    cand = _candidate(vocab, [*seqs[row].tolist(), w], own, xp.cat([alphas[row], alpha[row: row + 1]]),
                                      w == vocab.end_id, grid, xp)
                    finished[b].append(cand)
                    if steered:
                        ranked[id(cand)] = s
                    if prior is not None:
                        fused[id(cand)] = float(fused_scores[row] + fused_logp[row, w])
                    slots[b] -= 1
                else:
                    new_rows.append(row)
                    new_words.append(w)
                    new_scores.append(s)
                    new_img.append(b)
                need -= 1
        if not new_rows:
            break
        rows = xp.asarray(new_rows, feats, "long")
        words = xp.asarray(new_words, feats, "long")
        if steered:
            model_scores = model_scores[rows] + model_logp[rows, words]
        if prior is not None:
            fused_scores = fused_scores[rows] + fused_logp[rows, words]
        scores = xp.asarray(new_scores, feats, feats.dtype)
        img_of = xp.asarray(new_img, feats, "long")
        seqs = xp.cat([seqs[rows], words[:, None]], 1)
        alphas = xp.cat([alphas[rows], alpha[rows][:, None]], 1)
        h, c = h[rows], c[rows]

    def order(cd: Candidate) -> float:  # the model's ranking (with the prior), plus the tag bonus the caption collected
        base = fused.get(id(cd), cd.score)
        return rank_key(base, len(cd.ids), cfg.length_penalty) + (ranked[id(cd)] - base if ranked else 0.0)

    return [sorted(f, key=order, reverse=True) for f in finished]


def decode(decoder, features, vocab, cfg, rules: Rules, steer=None) -> list[list[Candidate]]:
    """Candidates for each image: greedy for beam size 1 (the same caption beam 1 gives), else beam
    search; `steer`: grounded decoding's per-image word bonus (`captioner.decoding.steer.TagBonus`)."""
    if cfg.beam_size <= 1:
        return [[c] for c in greedy_decode(decoder, features, vocab, cfg, rules, steer)]
    return beam_search(decoder, features, vocab, cfg, rules, steer)
