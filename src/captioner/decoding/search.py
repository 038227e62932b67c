"""Greedy decoding and beam search, batched over images and beams.

Special tokens (`<start>`, `<pad>`, `<unk>`) are never emitted, and `<end>` is not allowed as the
first word. With `no_repeat_ngram` n > 0, a word that would repeat an n-gram already in the
caption is not emitted either ("a man in a red shirt is sitting in a red shirt"). Scores are sums of the model's log-probabilities of the emitted tokens (the final
`<end>` included when emitted), so a teacher-forced pass over a caption gives the same number.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from captioner.model.decoder import Decoder
from captioner.model.vocab import Vocab


@dataclass
class Candidate:
    """One decoded caption."""

    tokens: list[str]
    ids: list[int]  # word ids, `<end>` included when it was emitted
    score: float  # summed log-probability
    attention: torch.Tensor  # (words, N, N), one map per generated word

    @property
    def caption(self) -> str:
        return " ".join(self.tokens)

    @property
    def normalized_score(self) -> float:
        """Mean log-probability per emitted token."""
        return self.score / max(len(self.ids), 1)

    def to_dict(self, with_attention: bool = False) -> dict:
        d = {"caption": self.caption, "tokens": self.tokens, "score": round(self.score, 6),
             "normalized_score": round(self.normalized_score, 6)}
        if with_attention:
            d["attention"] = self.attention.tolist()
        return d


def _banned_mask(vocab: Vocab, device) -> torch.Tensor:
    mask = torch.zeros(len(vocab), dtype=torch.bool, device=device)
    mask[[vocab.pad_id, vocab.start_id, vocab.unk_id]] = True
    return mask


def repeat_ban(seqs: torch.Tensor, n: int, vocab_size: int, end_id: int) -> torch.Tensor | None:
    """(R, V) mask of the words that would complete an n-gram already in each row of `seqs`
    (R, L), or None when none can (n <= 0 or rows shorter than n)."""
    R, L = seqs.shape
    if n <= 0 or L < n:
        return None
    windows = seqs.unfold(1, n - 1, 1) if n > 1 else seqs.new_zeros(R, L + 1, 0)  # (R, L-n+2, n-1)
    match = (windows[:, :-1] == windows[:, -1:]).all(2)  # earlier (n-1)-grams equal to the last one
    followers = seqs[:, n - 1 :]  # the word after each of them
    hits = torch.zeros(R, vocab_size, dtype=torch.int32, device=seqs.device)
    hits.scatter_add_(1, followers, match.to(torch.int32))
    hits[:, end_id] = 0
    return hits > 0


def _prepare(decoder: Decoder, features: torch.Tensor):
    feats = decoder.flatten(features)
    grid = int(round(feats.shape[1] ** 0.5))
    return feats, decoder.project(feats), grid


def rank_key(score: float, n_tokens: int, length_penalty: float) -> float:
    """Score used to order candidates: summed log-prob / length ** length_penalty."""
    return score / (max(n_tokens, 1) ** length_penalty)


@torch.inference_mode()
def greedy_decode(decoder: Decoder, features: torch.Tensor, vocab: Vocab, max_len: int = 30,
                  no_repeat_ngram: int = 0) -> list[Candidate]:
    """The most likely word at each step, for a batch of images (B, N, N, C) or (B, P, C)."""
    feats, proj, grid = _prepare(decoder, features)
    B = feats.shape[0]
    h, c = decoder.init_state(feats)
    words = torch.full((B,), vocab.start_id, dtype=torch.long, device=feats.device)
    banned = _banned_mask(vocab, feats.device)
    ids, scores, alphas = [], torch.zeros(B, dtype=feats.dtype, device=feats.device), []
    done = torch.zeros(B, dtype=torch.bool, device=feats.device)
    for t in range(max_len):
        logp, h, c, alpha = decoder.step(feats, proj, words, h, c)
        logp = logp.masked_fill(banned, float("-inf"))
        if t == 0:
            logp[:, vocab.end_id] = float("-inf")
        ban = repeat_ban(torch.stack(ids, 1), no_repeat_ngram, len(vocab), vocab.end_id) if ids else None
        if ban is not None:
            logp = logp.masked_fill(ban, float("-inf"))
        best, words = logp.max(dim=1)
        scores += torch.where(done, torch.zeros_like(best), best)
        ids.append(words)
        alphas.append(alpha)
        done |= words == vocab.end_id
        if bool(done.all()):
            break
    ids_t, alpha_t = torch.stack(ids, 1), torch.stack(alphas, 1)
    out = []
    for b in range(B):
        seq = ids_t[b].tolist()
        n = seq.index(vocab.end_id) + 1 if vocab.end_id in seq else len(seq)
        n_words = n - 1 if seq[n - 1] == vocab.end_id else n
        out.append(Candidate(vocab.decode(seq[:n]), seq[:n], float(scores[b]),
                             alpha_t[b, :n_words].reshape(n_words, grid, grid).cpu()))
    return out


@torch.inference_mode()
def beam_search(decoder: Decoder, features: torch.Tensor, vocab: Vocab, beam_size: int = 3, max_len: int = 30,
                length_penalty: float = 0.0, no_repeat_ngram: int = 0) -> list[list[Candidate]]:
    """The `beam_size` best distinct captions for each image, best first.

    All live beams of all images advance in one tensor step; beams that emitted `<end>` leave
    the computation. A beam still running at `max_len` becomes a candidate as it is.
    Candidates are ordered by `score / length ** length_penalty` (0: plain summed log-prob).
    """
    feats, proj, grid = _prepare(decoder, features)
    B, P, C = feats.shape
    k, dev = beam_size, feats.device
    banned = _banned_mask(vocab, dev)
    V = len(vocab)
    h0, c0 = decoder.init_state(feats)
    # Row r of the live batch belongs to image img_of[r]; start with one row per image.
    img_of = torch.arange(B, device=dev)
    h, c = h0, c0
    scores = torch.zeros(B, dtype=feats.dtype, device=dev)
    seqs = torch.full((B, 0), vocab.start_id, dtype=torch.long, device=dev)
    alphas = torch.zeros(B, 0, P, dtype=feats.dtype, device=dev)
    words = torch.full((B,), vocab.start_id, dtype=torch.long, device=dev)
    finished: list[list[Candidate]] = [[] for _ in range(B)]
    slots = torch.full((B,), k, dtype=torch.long)  # beams each image still needs

    def emit(row_seq, row_alpha, score, ended):
        ids = row_seq.tolist()
        n_words = len(ids) - 1 if ended else len(ids)
        return Candidate(vocab.decode(ids), ids, float(score), row_alpha[:n_words].reshape(n_words, grid, grid).cpu())

    for t in range(max_len):
        logp, h, c, alpha = decoder.step(feats[img_of], proj[img_of], words, h, c)
        logp = logp.masked_fill(banned, float("-inf"))
        if t == 0:
            logp[:, vocab.end_id] = float("-inf")
        ban = repeat_ban(seqs, no_repeat_ngram, V, vocab.end_id)
        if ban is not None:
            logp = logp.masked_fill(ban, float("-inf"))
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
        slots_list = slots.tolist()
        for b in range(B):
            need = slots_list[b]
            if need == 0:
                continue
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
                    finished[b].append(emit(seq, torch.cat([alphas[row], alpha[row : row + 1]]), s, ended))
                    need -= 1
                    slots[b] -= 1
                else:
                    new_rows.append(row)
                    new_words.append(w)
                    new_scores.append(s)
                    new_img.append(b)
                    need -= 1
            slots_list[b] = need
        if not new_rows:
            break
        rows = torch.tensor(new_rows, device=dev)
        words = torch.tensor(new_words, device=dev)
        scores = torch.tensor(new_scores, dtype=feats.dtype, device=dev)
        img_of = torch.tensor(new_img, device=dev)
        seqs = torch.cat([seqs[rows], words.unsqueeze(1)], dim=1)
        alphas = torch.cat([alphas[rows], alpha[rows].unsqueeze(1)], dim=1)
        h, c = h[rows], c[rows]
    results = []
    for b in range(B):
        cands = sorted(finished[b], key=lambda cd: rank_key(cd.score, len(cd.ids), length_penalty), reverse=True)
        results.append(cands)
    return results


def decode(decoder: Decoder, features: torch.Tensor, vocab: Vocab, beam_size: int, max_len: int = 30,
           length_penalty: float = 0.0, no_repeat_ngram: int = 0) -> list[list[Candidate]]:
    """Candidates for each image: greedy for beam size 1 (the same caption beam 1 gives), else beam search."""
    if beam_size <= 1:
        return [[c] for c in greedy_decode(decoder, features, vocab, max_len, no_repeat_ngram)]
    return beam_search(decoder, features, vocab, beam_size, max_len, length_penalty, no_repeat_ngram)
