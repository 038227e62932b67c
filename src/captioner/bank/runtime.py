"""`SentenceBank`: for each photo, the human sentence of the bank that fits it best, and whether it should
replace the generated caption.

1. Shortlist: the bank's sentences ranked by the shipped first-stage projection (`retrieval.first_stage`:
   a sentence's bag of words times `words` is its vector in the projection's rank space, computed once
   when the bank loads; a photo's unit pooled features times `basis` is its vector there), top
   `bank_shortlist` per photo.
2. Re-score the shortlist with the captioner's teacher-forced likelihood (`scoring.sentence_likelihood`,
   one batch per photo), minus `bank_prior` times the sentence's likelihood under the mean photo (what the
   captioner would say of any photo: "a man ...", "a dog ..."), plus `bank_evidence` times its
   first-stage score, minus `bank_support` times the mean per token of the support deficit of its object
   words (`captioner.support`: `log(support_min / p)` for a word whose concept's presence p is below
   `support_min`; the same evidence the search's `support_penalty` uses).
3. Choose: the best sentence replaces the generated caption when its score, so computed, exceeds the
   generated caption's own by more than `bank_margin`. Only photos whose generated caption the model is
   unsure of (mean log-probability per token below `bank_unsure`; 0: all) consult the bank at all, so a
   photo described confidently costs nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.bank.scoring import SentenceScorer, inference, sentence_likelihood
from captioner.bank.store import BANK_FILE, BankData, load_bank
from captioner.decoding.arrays import arrays_of
from captioner.decoding.candidate import Candidate
from captioner.retrieval.first_stage import FILE_NAME as PROJECTION_FILE
from captioner.retrieval.first_stage import QueryProjection


@dataclass
class BankPick:
    """The best bank sentence for one photo and the scores the choice compared."""

    index: int               # row in the bank
    tokens: list[str]
    ids: list[int]           # word ids and `<end>`
    likelihood: float        # mean log-probability per token given the photo
    score: float             # its choice score (likelihood - prior * its prior + evidence * first stage)
    generated_score: float   # the generated caption's choice score
    chosen: bool             # replaces the generated caption


def _torch_arrays():
    from captioner.decoding.torch_arrays import TORCH

    return TORCH


class SentenceBank:
    """The bank's sentences and first stage on one kind of array (`xp`, `captioner.decoding.arrays`): torch tensors
    for the PyTorch path (the default), numpy arrays for the torch-free one (`captioner.runtime.lean`); the rules
    below are the same for both."""

    def __init__(self, data: BankData, projection: QueryProjection, vocab, xp=None):
        self.xp = xp = xp if xp is not None else _torch_arrays()
        self.data = data
        self.projection = projection
        self.vocab = vocab
        self.tokens = xp.asarray(data.tokens.astype(np.int64), None, "long")
        self.prior = data.prior.astype(np.float32)
        self.mean_grid = xp.asarray(data.mean_grid.astype(np.float32), None, "float")
        self._vectors = self._text(data.tokens)  # (n, rank), numpy
        self.vectors = xp.asarray(self._vectors, None, "float")
        self._scorer, self._scorer_key = None, None

    @classmethod
    def load(cls, folder: str | Path, vocab, model_name: str | None = None, feature_dim: int | None = None, xp=None):
        """The bank and first-stage projection in `folder` (on `xp`'s kind of array, default torch), or None when
        either is missing or made for another model."""
        folder = Path(folder)
        if not (folder / BANK_FILE).is_file():
            return None
        data = load_bank(folder / BANK_FILE, vocab_size=len(vocab), model_name=model_name)
        projection = QueryProjection.load(folder / PROJECTION_FILE, vocab_size=len(vocab), feature_dim=feature_dim,
                                          model_name=model_name)
        if data is None or projection is None or data.mean_grid.shape[-1] != projection.feature_dim:
            return None
        return cls(data, projection, vocab, xp)

    def __len__(self) -> int:
        return len(self.data)

    # ------------------------------------------------------------------ first stage
    # computed in numpy on both paths (the same sums in the same order: the same shortlist), given and returned
    # as the bank's kind of array
    def _text(self, tokens: np.ndarray) -> np.ndarray:
        ids = np.array(tokens, dtype=np.int64)
        for j in range(ids.shape[1] - 1, 0, -1):  # each word once: its later copies count as padding
            ids[(ids[:, :j] == ids[:, j : j + 1]).any(1), j] = 0
        ids[np.isin(ids, self.vocab.special_ids) | (ids >= self.projection.vocab_size)] = 0
        known = (ids != 0).astype(np.float32)
        weights = known / np.sqrt(np.maximum(known.sum(1), 1.0))[:, None]
        out = np.zeros((len(ids), self.projection.words.shape[1]), np.float32)
        for j in range(ids.shape[1]):
            out += weights[:, j : j + 1] * self.projection.words[ids[:, j]]
        return out

    def _photos(self, grids) -> np.ndarray:
        g = np.asarray(self.xp.to_numpy(grids), dtype=np.float32)
        pooled = g.reshape(g.shape[0], -1, g.shape[-1]).mean(1)
        pooled /= np.maximum(np.sqrt((pooled * pooled).sum(1)), np.float32(1e-12))[:, None]
        return pooled @ self.projection.basis.T

    def text_vectors(self, tokens):
        """(n, rank): each 0-padded token row's unit bag of distinct known words times the projection's
        `words` (`first_stage.bag_of_words`, for many rows at once)."""
        return self.xp.asarray(self._text(self.xp.to_numpy(tokens)), None, "float")

    def photo_vectors(self, grids):
        """(B, rank): each photo's unit pooled features in the projection's rank space."""
        return self.xp.asarray(self._photos(grids), None, "float")

    def shortlist(self, grids, k: int):
        """(indices (B, k), first-stage scores (B, k)), best first; of sentences scored alike (the same words in
        another order), the earlier in the bank first."""
        from captioner.decoding.arrays import NUMPY

        values, index = NUMPY.topk(self._photos(grids) @ self._vectors.T, min(k, len(self)))
        return self.xp.asarray(index, None, "long"), self.xp.asarray(values, None, "float")

    # ------------------------------------------------------------------ likelihood
    def scorer(self, decoder):
        """The likelihood scorer of `decoder`: a `Decoder` (its `SentenceScorer`, made once per set of weights),
        or already a scorer (the torch-free path's `captioner.retrieval.numpy_likelihood.NumpyScorer`)."""
        if not hasattr(decoder, "parameters"):
            return decoder
        key = tuple(p._version for p in decoder.parameters())
        if self._scorer is None or self._scorer_key != (id(decoder), key):
            self._scorer, self._scorer_key = SentenceScorer(decoder), (id(decoder), key)
        return self._scorer

    def generated_tokens(self, ids: list[int]):
        """A generated caption's word ids as a 0-padded row (words the vocabulary lacks as `<unk>`)."""
        v = len(self.vocab)
        words = [i if i < v else self.vocab.unk_id for i in ids if i not in (self.vocab.end_id, self.vocab.start_id)]
        return self.xp.asarray([words or [self.vocab.unk_id]], self.tokens, "long")

    def choose(self, decoder, grids, generated: list, decoding, deficit=None) -> list[BankPick | None]:
        """For each photo (grids (B, ...), `generated`: its best generated `Candidate` or None), the bank's pick.
        `deficit` (B, V): each vocabulary word's support deficit for the photo (`support_deficit`; None: none)."""
        k = decoding.bank_shortlist
        if k <= 0 or len(grids) == 0:
            return [None] * len(grids)
        with inference(self.xp):
            return self._choose(self.scorer(decoder), grids, generated, decoding, deficit)

    def _choose(self, scorer, grids, generated: list, decoding, deficit) -> list[BankPick | None]:
        xp, k = self.xp, decoding.bank_shortlist
        grids = xp.to_float(grids.reshape(grids.shape[0], -1, grids.shape[-1]))
        asked = [gen is None or not decoding.bank_unsure or gen.normalized_score < decoding.bank_unsure
                 for gen in generated]
        if not any(asked):
            return [None] * len(grids)
        index, first = self.shortlist(grids, k)
        index_np, first_np = xp.to_numpy(index), xp.to_numpy(first)
        picks = []
        for b in range(len(grids)):
            gen = generated[b]
            if not asked[b]:
                picks.append(None)
                continue
            rows = self.tokens[index[b]]
            gen_row = None if gen is None else self.generated_tokens(gen.ids)
            if gen_row is not None:  # the generated caption's first stage and prior, in the same batches
                width = max(rows.shape[1], gen_row.shape[1])
                rows, gen_row = _pad(xp, rows, width), _pad(xp, gen_row, width)
            ll = sentence_likelihood(scorer, grids[b], rows, self.vocab.start_id, self.vocab.end_id)
            score = ll - decoding.bank_prior * self.prior[index_np[b]] + decoding.bank_evidence * first_np[b]
            if deficit is not None and decoding.bank_support > 0:
                score = score - decoding.bank_support * mean_deficit(deficit[b], rows)
            best = int(np.argmax(score))
            gen_score = -np.inf
            if gen is not None:
                gen_prior = 0.0
                if decoding.bank_prior:
                    gen_prior = float(sentence_likelihood(scorer, self.mean_grid, gen_row, self.vocab.start_id,
                                                          self.vocab.end_id)[0])
                gen_first = float(self._photos(grids[b : b + 1])[0] @ self._text(xp.to_numpy(gen_row))[0])
                gen_score = (gen.normalized_score - decoding.bank_prior * gen_prior
                             + decoding.bank_evidence * gen_first)
                if deficit is not None and decoding.bank_support > 0:
                    gen_score -= decoding.bank_support * float(mean_deficit(deficit[b], gen_row)[0])
            i = int(index_np[b, best])
            words = self.data.words(i, self.vocab)
            picks.append(BankPick(i, words, [self.vocab.stoi[w] for w in words] + [self.vocab.end_id],
                                  float(ll[best]), float(score[best]), float(gen_score),
                                  bool(score[best] > gen_score + decoding.bank_margin)))
        return picks


def _pad(xp, rows, width: int):
    """0-padded token rows widened to `width` columns."""
    if rows.shape[1] >= width:
        return rows
    return xp.cat([rows, xp.full((rows.shape[0], width - rows.shape[1]), 0, rows, "long")], 1)


def mean_deficit(deficit, rows) -> np.ndarray:
    """(R,): each 0-padded token row's summed word deficit (`deficit` (V,)) over its words and `<end>` (torch
    tensors or numpy arrays, both of one kind)."""
    xp = arrays_of(deficit)
    d = xp.to_float(xp.copy(deficit))
    d[0] = 0.0  # <pad>
    return xp.to_numpy(d[rows].sum(1) / xp.to_float((rows != 0).sum(1) + 1))


def support_deficit(support, presence, vocab, minimum: float):
    """(B, V) >= 0: `log(minimum / p)` for each object word whose concept's presence p is below `minimum`
    (`support`: a `captioner.support.penalty.SupportEvidence` or `captioner.runtime.numpy_support.NumpySupport`;
    presence (B, K) from its `presence`)."""
    penalty = support.penalty(presence, vocab, 1.0, minimum)
    return None if penalty is None else -penalty


def bank_candidate(bank: SentenceBank, decoder, grid, pick: BankPick) -> Candidate:
    """The picked sentence as a `Candidate` (`source` "bank"), with its attention maps for the photo."""
    scorer = bank.scorer(decoder)
    row = bank.xp.asarray([pick.ids[:-1]], bank.tokens, "long")
    _, maps = sentence_likelihood(scorer, grid.reshape(-1, grid.shape[-1]), row, bank.vocab.start_id,
                                  bank.vocab.end_id, attention=True)
    side = int(round(maps.shape[-1] ** 0.5))
    return Candidate(list(pick.tokens), list(pick.ids), pick.likelihood * len(pick.ids),
                     maps[0, : len(pick.tokens)].reshape(len(pick.tokens), side, side), source="bank")


def with_bank(bank: SentenceBank | None, decoder, grids, candidates: list[list[Candidate]],
              decoding, support=None, word_probs=None) -> list[list[Candidate]]:
    """Each photo's candidates, with the bank's sentence first where the choice prefers it (the generated
    captions follow it); unchanged when the bank is off (`bank_shortlist` 0) or missing. `decoder`: the model's
    `Decoder` (PyTorch path) or its numpy likelihood scorer (torch-free path); `support`: the model folder's
    evidence (with `bank_support` > 0; `word_probs`: the tagger's, when computed)."""
    if bank is None or decoding.bank_shortlist <= 0 or not candidates:
        return candidates
    deficit = None
    if support is not None and decoding.bank_support > 0:
        deficit = support_deficit(support, support.presence(grids, word_probs), bank.vocab, decoding.support_min)
    picks = bank.choose(decoder, grids, [cs[0] if cs else None for cs in candidates], decoding, deficit)
    return [[bank_candidate(bank, decoder, grids[b], p), *cs] if p is not None and p.chosen else cs
            for b, (p, cs) in enumerate(zip(picks, candidates))]


class BankSource:
    """A model folder's sentence bank, loaded on first use for the model that asks (None when missing)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._loaded: dict = {}

    def for_model(self, model) -> SentenceBank | None:
        key = (id(model), model.cfg.name)
        if key not in self._loaded:
            self._loaded[key] = load_for(self.folder, model)
        return self._loaded[key]


def load_for(folder, model) -> SentenceBank | None:
    """The model folder's sentence bank for `model` (a `CaptionModel`), or None."""
    return SentenceBank.load(folder, model.vocab, model.cfg.name, model.decoder.init_h.weight.shape[1])
