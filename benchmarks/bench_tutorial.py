"""The engine beside the well-known PyTorch tutorial's captioner, one photo at a time, in one run.

sgrvinod's *a-PyTorch-Tutorial-to-Image-Captioning* captions a photo with `caption_image_beam_search`:
a ResNet-101 encoder (classifier removed) on a 256x256 image, pooled to a 14x14 grid of 2,048 channels,
then an LSTM decoder with soft attention (attention, embedding and decoder sizes 512) and a beam search
over one image's k beams with Python bookkeeping, recomputing the encoder's attention projection at
every step. This file rebuilds that model and loop (`TutorialEncoder`, `TutorialDecoder`,
`tutorial_caption`) with the tutorial's sizes and this model's vocabulary size.

What is timed, alternating photo by photo so that machine noise hits all alike:
- `tutorial`: the loop above. No ResNet-101 weights or tutorial checkpoint exist offline, so its weights
  are random: timing does not depend on the values, but the number of decoding steps does (random
  weights rarely say `<end>`). So each photo's tutorial beams finish at the steps where the engine's
  beam-3 candidates for that photo finished (plain decoding): what the trained tutorial model would do
  if it wrote captions as long as ours. The vocabulary has this model's size (the tutorial's COCO word
  map is larger, which would only make it slower).
- `Captioner.caption` (the PyTorch engine) and `LeanCaptioner.caption` (the torch-free engine that
  `captioner caption` uses), each at beam 3 with the model's shipped decoding and with plain decoding
  (grounding and the support penalty off, as the tutorial).

    python -m benchmarks.bench_tutorial --photos 30 --rounds 2

Prints the median ms per photo of each and the ratio tutorial / engine (the issue's target: > 10x).
Torch and ONNX Runtime use the same thread count (`--threads`, default: the machine's cores).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from tests.oracles.photos import real_photos


class TutorialEncoder(nn.Module):
    """The tutorial's `Encoder`: ResNet-101 without its pooling and classifier, adaptive-pooled to 14x14."""

    def __init__(self, grid: int = 14):
        super().__init__()
        import torchvision

        resnet = torchvision.models.resnet101(weights=None)  # random weights: see the module docstring
        self.resnet = nn.Sequential(*list(resnet.children())[:-2])
        self.pool = nn.AdaptiveAvgPool2d((grid, grid))

    def forward(self, images):
        return self.pool(self.resnet(images)).permute(0, 2, 3, 1)  # (B, 14, 14, 2048)


class TutorialAttention(nn.Module):
    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)

    def forward(self, encoder_out, decoder_hidden):
        att1 = self.encoder_att(encoder_out)  # recomputed at every step, as in the tutorial
        att2 = self.decoder_att(decoder_hidden)
        att = self.full_att(torch.relu(att1 + att2.unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(att, dim=1)
        return (encoder_out * alpha.unsqueeze(2)).sum(dim=1), alpha


class TutorialDecoder(nn.Module):
    """The tutorial's `DecoderWithAttention` (attention, embedding and decoder sizes 512, dropout unused at test)."""

    def __init__(self, vocab_size: int, encoder_dim: int = 2048, dim: int = 512):
        super().__init__()
        self.attention = TutorialAttention(encoder_dim, dim, dim)
        self.embedding = nn.Embedding(vocab_size, dim)
        self.decode_step = nn.LSTMCell(dim + encoder_dim, dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, dim)
        self.init_c = nn.Linear(encoder_dim, dim)
        self.f_beta = nn.Linear(dim, encoder_dim)
        self.fc = nn.Linear(dim, vocab_size)


def tutorial_preprocess(path) -> torch.Tensor:
    """The tutorial's preprocessing: `scipy.misc.imread` and `imresize` (both PIL underneath; imresize's
    default is bilinear) to 256x256, `/ 255.` in float64, a FloatTensor, `transforms.Normalize`."""
    img = np.array(Image.open(path).convert("RGB"))
    img = np.array(Image.fromarray(img).resize((256, 256), Image.BILINEAR))
    img = torch.FloatTensor(img.transpose(2, 0, 1) / 255.0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (img - mean) / std


def tutorial_caption(encoder, decoder, path, start_id: int, end_steps: list[int], k: int = 3) -> list[int]:
    """`caption_image_beam_search` for one photo, statement by statement, as the tutorial writes it (no
    `torch.no_grad()`, the attention maps of every beam kept, Python loops over tensors), except for when its
    beams finish: with random weights they would not say `<end>`, so a beam finishes at each step listed in
    `end_steps` (the steps at which the engine's k candidates for this photo ended; see the module docstring)."""
    image = tutorial_preprocess(path).unsqueeze(0)
    encoder_out = encoder(image)
    enc_image_size, encoder_dim = encoder_out.size(1), encoder_out.size(3)
    encoder_out = encoder_out.view(1, -1, encoder_dim)
    num_pixels = encoder_out.size(1)
    encoder_out = encoder_out.expand(k, num_pixels, encoder_dim)
    vocab_size = decoder.fc.out_features
    k_prev_words = torch.LongTensor([[start_id]] * k)
    seqs = k_prev_words
    top_k_scores = torch.zeros(k, 1)
    seqs_alpha = torch.ones(k, 1, enc_image_size, enc_image_size)
    complete_seqs, complete_seqs_alpha, complete_seqs_scores = [], [], []
    step = 1
    mean_encoder_out = encoder_out.mean(dim=1)
    h, c = decoder.init_h(mean_encoder_out), decoder.init_c(mean_encoder_out)
    while True:
        embeddings = decoder.embedding(k_prev_words).squeeze(1)
        awe, alpha = decoder.attention(encoder_out, h)
        alpha = alpha.view(-1, enc_image_size, enc_image_size)
        gate = torch.sigmoid(decoder.f_beta(h))
        awe = gate * awe
        h, c = decoder.decode_step(torch.cat([embeddings, awe], dim=1), (h, c))
        scores = torch.log_softmax(decoder.fc(h), dim=1)
        scores = top_k_scores.expand_as(scores) + scores
        if step == 1:
            top_k_scores, top_k_words = scores[0].topk(k, 0, True, True)
        else:
            top_k_scores, top_k_words = scores.view(-1).topk(k, 0, True, True)
        prev_word_inds = torch.div(top_k_words, vocab_size, rounding_mode="floor")
        next_word_inds = top_k_words % vocab_size
        seqs = torch.cat([seqs[prev_word_inds], next_word_inds.unsqueeze(1)], dim=1)
        seqs_alpha = torch.cat([seqs_alpha[prev_word_inds], alpha[prev_word_inds].unsqueeze(1)], dim=1)
        ending = sum(1 for e in end_steps if e == step)  # the beams that said <end> at this step
        # the tutorial's test, a Python loop over the tensor of next words (its result replaced by `ending`)
        incomplete_inds = [ind for ind, next_word in enumerate(next_word_inds) if next_word != -1]
        incomplete_inds = incomplete_inds[: len(incomplete_inds) - ending]
        complete_inds = list(set(range(len(next_word_inds))) - set(incomplete_inds))
        if len(complete_inds) > 0:
            complete_seqs.extend(seqs[complete_inds].tolist())
            complete_seqs_alpha.extend(seqs_alpha[complete_inds].tolist())
            complete_seqs_scores.extend(top_k_scores[complete_inds])
        k -= len(complete_inds)
        if k == 0:
            break
        seqs = seqs[incomplete_inds]
        seqs_alpha = seqs_alpha[incomplete_inds]
        h = h[prev_word_inds[incomplete_inds]]
        c = c[prev_word_inds[incomplete_inds]]
        encoder_out = encoder_out[prev_word_inds[incomplete_inds]]
        top_k_scores = top_k_scores[incomplete_inds].unsqueeze(1)
        k_prev_words = next_word_inds[incomplete_inds].unsqueeze(1)
        if step > 50:
            break
        step += 1
    i = complete_seqs_scores.index(max(complete_seqs_scores))
    return complete_seqs[i]


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t) * 1000, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=30, help="Flickr8k test photos (default 30)")
    p.add_argument("--rounds", type=int, default=2, help="passes over the photos (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from captioner.pipeline import Captioner
    from captioner.runtime.lean import LeanCaptioner

    torch_engine = Captioner.from_pretrained()
    lean_engine = LeanCaptioner(threads=a.threads)
    vocab = torch_engine.model.vocab
    torch.manual_seed(0)
    encoder, decoder = TutorialEncoder().eval(), TutorialDecoder(len(vocab)).eval()
    paths = real_photos(a.photos)
    if not paths:
        p.error("no Flickr8k photos found: set CAPTIONER_DATA to the Flickr8k folder")
    plain = {"beam_size": 3, "tag_bonus": 0.0, "support_penalty": 0.0}
    shipped = {"beam_size": 3}
    engines = {
        "Captioner.caption, shipped decoding": lambda p: torch_engine.caption(p, **shipped),
        "Captioner.caption, plain decoding": lambda p: torch_engine.caption(p, **plain),
        "LeanCaptioner.caption, shipped decoding": lambda p: lean_engine.caption(p, **shipped),
        "LeanCaptioner.caption, plain decoding": lambda p: lean_engine.caption(p, **plain),
    }
    steps = {}
    for path in paths[:2]:  # warm-up: every engine and the tutorial once
        for fn in engines.values():
            fn(path)
        tutorial_caption(encoder, decoder, path, vocab.start_id, [3, 4, 5])
    times: dict[str, list[float]] = {"tutorial (ResNet-101, 256 px)": [], **{k: [] for k in engines}}
    for r in range(a.rounds):
        for path in paths:
            for name, fn in engines.items():
                ms, res = timed(fn, path)
                times[name].append(ms)
                if name.startswith("Captioner.caption, plain"):  # the step at which each candidate ended
                    steps[path] = [len(cd.ids) for cd in res.candidates]
            ms, _ = timed(tutorial_caption, encoder, decoder, path, vocab.start_id, steps[path])
            times["tutorial (ResNet-101, 256 px)"].append(ms)
        print(f"round {r + 1} done", file=sys.stderr, flush=True)
    tutorial = statistics.median(times["tutorial (ResNet-101, 256 px)"])
    out = {"photos": len(paths), "rounds": a.rounds, "threads": a.threads,
           "mean_steps": statistics.mean(max(v) for v in steps.values()), "load_average": os.getloadavg(), "ms": {}}
    print(f"{len(paths)} Flickr8k test photos x {a.rounds} rounds, beam 3, {a.threads} threads; "
          f"tutorial steps per photo: mean {out['mean_steps']:.1f}; load average {os.getloadavg()}")
    print(f"{'':42s} {'median ms':>10s} {'tutorial / this':>16s}")
    for name, ms in times.items():
        med = statistics.median(ms)
        out["ms"][name] = med
        print(f"{name:42s} {med:10.1f} {tutorial / med:15.2f}x")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
