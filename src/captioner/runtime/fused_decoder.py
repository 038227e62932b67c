"""An inference-only view of a trained `Decoder` laid out for fast CPU decoding.

Beam search over one photo multiplies a handful of rows (the beams) by each weight matrix at
every step. For such thin products, a weight stored transposed (in x out, contiguous) runs
through the BLAS much faster than `nn.Linear`'s (out x in) layout, and the LSTM's two input
products fuse into one. `InferenceDecoder` holds those copies and offers the same decoding
interface as `Decoder` (the `captioner.decoding.StepDecoder` protocol), so decoding accepts either. It computes the same function; only the rounding of float sums can differ.
Build it from a decoder in eval mode; it does not follow later changes to the decoder's weights.
"""
from __future__ import annotations

import torch

from captioner.model.decoder import Decoder


def _t(linear: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    return linear.weight.detach().t().contiguous(), linear.bias.detach().clone()


class InferenceDecoder:
    def __init__(self, decoder: Decoder):
        self.decoder = decoder  # for `project`, `init_state` (once per image) and the embedding
        self.vocab_size = decoder.vocab_size
        self.embedding = decoder.embedding
        att = decoder.attention
        self.hid_w, self.hid_b = _t(att.hidden_proj)
        self.score_w = att.score.weight.detach().reshape(-1).clone()
        self.score_b = att.score.bias.detach().clone()
        self.gate_w, self.gate_b = _t(decoder.gate)
        lstm = decoder.lstm
        self.lstm_w = torch.cat([lstm.weight_ih, lstm.weight_hh], dim=1).detach().t().contiguous()
        self.lstm_b = (lstm.bias_ih + lstm.bias_hh).detach().clone()
        self.out_w, self.out_b = _t(decoder.out)

    def to(self, device) -> InferenceDecoder:
        for name in ("hid_w", "hid_b", "score_w", "score_b", "gate_w", "gate_b", "lstm_w", "lstm_b", "out_w", "out_b"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def flatten(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder.flatten(features)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder.project(features)

    def init_state(self, features: torch.Tensor):
        return self.decoder.init_state(features)

    def step(self, features, projected, words, h, c):
        """Same contract as `Decoder.step` (eval mode: no dropout)."""
        hp = torch.addmm(self.hid_b, h, self.hid_w)
        e = torch.tanh(projected + hp.unsqueeze(1)).matmul(self.score_w) + self.score_b
        alpha = torch.softmax(e, dim=1)
        context = torch.bmm(alpha.unsqueeze(1), features).squeeze(1)
        context = torch.sigmoid(torch.addmm(self.gate_b, h, self.gate_w)) * context
        x = torch.cat([self.embedding(words), context, h], dim=1)
        i, f, g, o = torch.addmm(self.lstm_b, x, self.lstm_w).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        logp = torch.log_softmax(torch.addmm(self.out_b, h, self.out_w), dim=1)
        return logp, h, c, alpha
