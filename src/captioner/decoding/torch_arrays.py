"""`captioner.decoding.array_ops.Arrays` on torch tensors: the operations torch spells differently from numpy."""
from __future__ import annotations

import torch

from captioner.decoding.array_ops import Arrays


class TorchArrays(Arrays):
    lib = torch
    kinds = {"long": torch.long, "bool": torch.bool, "float": torch.float32}
    make = staticmethod(torch.tensor)

    def _on(self, like) -> dict:
        return {} if like is None else {"device": like.device}

    def max(self, x):
        return x.max(dim=1)

    def topk(self, x, k: int):
        """As `Arrays.topk`: the earlier entry first on ties. torch.topk orders equal values as it likes (on the
        CPU often the later first: a new word before its proxy, whose log-probability it takes, or the later of
        two beams in the same state), so a row whose top k holds equal values, or whose k-th value has equal
        values left out, is sorted stably instead."""
        values, idx = x.topk(k, dim=1)
        if k > 0:
            kth = values[:, -1:]
            tied = (values[:, 1:] == values[:, :-1]).any(1) | ((x == kth).sum(1) > (values == kth).sum(1))
            if bool(tied.any()):
                order = x[tied].sort(dim=1, descending=True, stable=True)
                values[tied], idx[tied] = order.values[:, :k], order.indices[:, :k]
        return values, idx

    def sort(self, x):
        return x.sort().values

    def addmm(self, bias, a, b):
        return torch.addmm(bias, a, b)

    def sigmoid(self, x):
        return torch.sigmoid(x)

    def softmax(self, x):
        return torch.softmax(x, dim=1)

    def logsumexp(self, x):
        return torch.logsumexp(x, dim=1)

    def mix(self, weights, x):
        return torch.bmm(weights.unsqueeze(1), x).squeeze(1)

    def nonzero(self, x):
        return x.nonzero(as_tuple=True)

    def index_add(self, out, index, values):
        return out.index_add_(1, index, values)

    def copy(self, x):
        return x.clone()

    def contiguous(self, x):
        return x.contiguous()

    def equal(self, a, b) -> bool:
        return a.shape == b.shape and torch.equal(a, b)

    def to_long(self, x):
        return x.long()

    def to_float(self, x):
        return x.float()

    def follow(self, x, like, dtype: bool = False):
        if x.device != like.device or (dtype and x.dtype != like.dtype):
            return x.to(like.device, like.dtype) if dtype else x.to(like.device)
        return x

    def host(self, x):
        return x.cpu()

    def from_numpy(self, a, like):
        return torch.from_numpy(a).to(like.device, like.dtype)

    def to_numpy(self, x):
        return x.cpu().numpy()


TORCH = TorchArrays()
