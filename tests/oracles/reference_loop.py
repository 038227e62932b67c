"""The classic tutorial-style captioning loop, an oracle for the engine's decoding.

It follows ``caption_image_beam_search`` of sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning:
one image at a time, plain PIL preprocessing, plain PyTorch modules and Python lists for the beam
bookkeeping. It deliberately uses nothing from ``captioner.decoding`` (nor the engine's fused
decoder or ONNX Runtime): it is an independent implementation of the same decoding rules, so
tests/test_reference_loop.py can check the engine against it, and benchmarks/bench_caption.py
times the engine against it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass
class RefResult:
    caption: str
    ids: list  # word ids, <end> included when emitted
    score: float  # summed log-probability


def reference_preprocess(path, input_size: int, mean, std) -> torch.Tensor:
    """Tutorial-style preprocessing: PIL open, RGB, resize to the model's input size, normalise.

    No JPEG draft decoding, no EXIF rotation, plain bicubic resize (the engine decodes big JPEGs
    at reduced scale and resizes with ``reducing_gap``; for photos already at ``input_size`` the
    two give identical tensors).
    """
    img = Image.open(path).convert("RGB")
    if img.size != (input_size, input_size):
        img = img.resize((input_size, input_size), Image.BICUBIC)
    arr = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (arr - m) / s


@torch.no_grad()
def reference_caption(model, image, beam_size: int = 3, max_len: int | None = None,
                      length_penalty: float | None = None, no_repeat_ngram: int | None = None) -> RefResult:
    """Caption one image the way ``caption_image_beam_search`` in the classic tutorial does.

    `model` is a ``CaptionModel``; `image` a path or a preprocessed (3, S, S) tensor. `max_len`,
    `length_penalty` and `no_repeat_ngram` default to the model's decoding settings
    (``model.decoding``); only those plain numbers are read from it. One image,
    its k beams as one batch, the attention projection of the image features recomputed at every
    step for every beam, Python lists for the bookkeeping. Decoding rules are the engine's:
    ``<start>``, ``<pad>``, ``<unk>`` never emitted (log-prob -inf, not renormalised), ``<end>``
    not allowed first, a beam that emits ``<end>`` completes and the beam shrinks by one, at
    ``max_len`` the live beams complete as they are, best = highest
    ``score / len(ids) ** length_penalty``, and with ``no_repeat_ngram`` n a word that would repeat
    an n-gram of its beam is not emitted (checked with plain Python lists here). Assumes the
    vocabulary has at least `beam_size` allowed words.
    """
    cfg, vocab, defaults = model.cfg, model.vocab, model.decoding
    encoder, decoder = model.encoder, model.decoder
    max_len = max_len or defaults.max_len
    length_penalty = defaults.length_penalty if length_penalty is None else length_penalty
    n_gram = defaults.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram
    if not isinstance(image, torch.Tensor):
        image = reference_preprocess(image, cfg.input_size, model.mean, model.std)
    k = beam_size
    vocab_size = len(vocab)
    device = next(decoder.parameters()).device

    encoder_out = encoder(image.unsqueeze(0).to(device))  # (1, N, N, C)
    encoder_dim = encoder_out.size(-1)
    encoder_out = encoder_out.view(1, -1, encoder_dim)  # (1, P, C)
    num_pixels = encoder_out.size(1)
    encoder_out = encoder_out.expand(k, num_pixels, encoder_dim)  # (k, P, C)

    k_prev_words = torch.tensor([[vocab.start_id]] * k, dtype=torch.long, device=device)  # (k, 1)
    seqs = k_prev_words  # (k, 1)
    top_k_scores = torch.zeros(k, 1, device=device)  # (k, 1)
    complete_seqs, complete_seqs_scores = [], []

    mean_encoder_out = encoder_out.mean(dim=1)
    h = torch.tanh(decoder.init_h(mean_encoder_out))
    c = torch.tanh(decoder.init_c(mean_encoder_out))
    banned = [vocab.pad_id, vocab.start_id, vocab.unk_id]

    for step in range(max_len):
        embeddings = decoder.embedding(k_prev_words).squeeze(1)  # (s, embed_dim)
        # the tutorial's Attention recomputes W_f f_i for every beam at every step
        awe, alpha = decoder.attention(encoder_out, decoder.attention.project(encoder_out), h)
        gate = torch.sigmoid(decoder.gate(h))
        awe = gate * awe
        h, c = decoder.lstm(torch.cat([embeddings, awe], dim=1), (h, c))
        scores = torch.log_softmax(decoder.out(h), dim=1)  # (s, vocab_size)
        scores[:, banned] = float("-inf")
        if step == 0:
            scores[:, vocab.end_id] = float("-inf")
        if n_gram > 0:
            for r, row in enumerate(seqs[:, 1:].tolist()):
                if len(row) >= n_gram:
                    last = row[len(row) - n_gram + 1 :]
                    for i in range(len(row) - n_gram + 1):
                        if row[i : i + n_gram - 1] == last and row[i + n_gram - 1] != vocab.end_id:
                            scores[r, row[i + n_gram - 1]] = float("-inf")
        scores = top_k_scores.expand_as(scores) + scores

        if step == 0:  # all k rows are the same <start> state
            top_k_scores, top_k_words = scores[0].topk(k, 0, True, True)
        else:
            top_k_scores, top_k_words = scores.view(-1).topk(k, 0, True, True)
        prev_word_inds = top_k_words // vocab_size
        next_word_inds = top_k_words % vocab_size
        seqs = torch.cat([seqs[prev_word_inds], next_word_inds.unsqueeze(1)], dim=1)

        last_step = step == max_len - 1
        incomplete_inds = [ind for ind, next_word in enumerate(next_word_inds.tolist())
                           if next_word != vocab.end_id and not last_step]
        complete_inds = [ind for ind in range(len(next_word_inds)) if ind not in incomplete_inds]
        for ind in complete_inds:
            complete_seqs.append(seqs[ind, 1:].tolist())
            complete_seqs_scores.append(float(top_k_scores[ind]))
        k -= len(complete_inds)
        if k == 0:
            break
        seqs = seqs[incomplete_inds]
        keep = prev_word_inds[incomplete_inds]
        h, c, encoder_out = h[keep], c[keep], encoder_out[keep]
        top_k_scores = top_k_scores[incomplete_inds].unsqueeze(1)
        k_prev_words = next_word_inds[incomplete_inds].unsqueeze(1)

    ranked = [s / (max(len(ids), 1) ** length_penalty) for ids, s in zip(complete_seqs, complete_seqs_scores)]
    i = ranked.index(max(ranked))
    ids = complete_seqs[i]
    words = [vocab.itos[w] for w in ids if w != vocab.end_id]
    return RefResult(" ".join(words), ids, complete_seqs_scores[i])


def reference_loop(model, paths, beam_size: int = 3) -> list[RefResult]:
    """The tutorial loop over a folder: one photo at a time, nothing overlapped."""
    return [reference_caption(model, p, beam_size) for p in paths]
