"""The few array operations the decoding code needs, for numpy arrays and torch tensors alike.

The search loops (`captioner.decoding.beams`), grounded decoding's steer (`captioner.decoding.steer`,
`captioner.tags.steering`), the new words (`captioner.tags.new_words`) and find's likelihood scorer
(`captioner.retrieval.likelihood_scorer`) are written once over these operations: the PyTorch path runs them
on tensors, the torch-free path (`captioner.runtime.lean`) on numpy arrays.
`captioner.decoding.arrays.arrays_of(x)` picks the operations for an array: `NUMPY` (`Arrays`, here), or for a
tensor `captioner.decoding.torch_arrays.TORCH`, which overrides the operations torch spells differently and is
imported only then, so this module and the numpy path never import torch.

Each operation gives the same numbers on both (the tests compare the two paths caption by caption). A
`like` argument is an existing array: new arrays go to its device; `kind` is "long", "bool", "float" (32-bit)
or a dtype of the library.
"""
from __future__ import annotations

import numpy as np


class Arrays:
    """The operations, on numpy arrays; `lib` is the library whose functions they call."""

    lib = np
    kinds = {"long": np.int64, "bool": np.bool_, "float": np.float32}
    make = staticmethod(np.array)  # an array from (nested) lists of numbers

    def _dtype(self, kind):
        return self.kinds[kind] if isinstance(kind, str) else kind

    def _on(self, like) -> dict:
        """The keyword arguments that put a new array on `like`'s device (numpy has one)."""
        return {}

    def asarray(self, values, like=None, kind="float"):
        return self.make(values, dtype=self._dtype(kind), **self._on(like))

    def full(self, shape, value, like=None, kind="float"):
        return self.lib.full(shape, value, dtype=self._dtype(kind), **self._on(like))

    def arange(self, n: int, like=None):
        return self.lib.arange(n, **self._on(like))

    def cat(self, arrays, axis: int = 0):
        return self.lib.concatenate(arrays, axis)

    def stack(self, arrays, axis: int = 0):
        return self.lib.stack(arrays, axis)

    def where(self, condition, a, b):
        return self.lib.where(condition, a, b)

    def isin(self, x, values):
        return self.lib.isin(x, values)

    def isinf(self, x):
        return self.lib.isinf(x)

    def isfinite(self, x):
        return self.lib.isfinite(x)

    def bincount(self, x, minlength: int = 0):
        return self.lib.bincount(x, minlength=minlength)

    def cumsum(self, x, axis: int):
        return self.lib.cumsum(x, axis)

    def clamp_max(self, x, top):
        return self.lib.clip(x, None, top)

    def amax(self, x, axis: int):
        return self.lib.amax(x, axis)

    def argmax(self, x):
        """Each row's index of its maximum (the first one on ties)."""
        return self.lib.argmax(x, 1)

    def max(self, x):
        """(values, indexes) of each row's maximum (the first one on ties)."""
        idx = self.argmax(x)
        return x[np.arange(len(x)), idx], idx

    def topk(self, x, k: int):
        """(values, indexes) of each row's k largest, largest first (the earlier on ties).

        A partition finds each row's k-th largest value; only the entries at or above it (k, or more on ties)
        are then sorted, stably, so the result is that of a stable sort of the whole row at a fraction of its
        cost (a beam's rows hold beam x vocabulary scores)."""
        n = x.shape[1]
        if k >= n or n <= 4 * k:
            idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(x, idx, axis=1), idx
        kth = np.partition(x, n - k, axis=1)[:, n - k]
        idx = np.empty((len(x), k), dtype=np.intp)
        for r, row in enumerate(x):
            cand = np.flatnonzero(row >= kth[r])
            if len(cand) < k:  # NaN in the row: the whole row, as the stable sort would
                cand = np.arange(n)
            idx[r] = cand[np.argsort(-row[cand], kind="stable")[:k]]
        return np.take_along_axis(x, idx, axis=1), idx

    def nonzero(self, x):
        """A tuple of index arrays, one per dimension, where `x` is true."""
        return np.nonzero(x)

    def sort(self, x):
        """A 1-D array's values in ascending order."""
        return np.sort(x)

    def addmm(self, bias, a, b):
        """`bias + a @ b` (torch fuses the sum into the product)."""
        return bias + a @ b

    def sigmoid(self, x):
        return 1.0 / (1.0 + np.exp(-x))

    def softmax(self, x):
        """Each row's softmax."""
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def logsumexp(self, x):
        """Each row's log(sum(exp(row))): (R,)."""
        m = x.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]

    def mix(self, weights, x):
        """Each row's weighted sum: (n, P) weights over (n, P, C) rows -> (n, C)."""
        return np.einsum("np,npc->nc", weights, x)

    def index_add(self, out, index, values):
        """`out[:, index[e]] += values[:, e]` for each e in order (torch's `index_add_` on dim 1), in place."""
        for e in range(len(index)):
            out[:, index[e]] += values[:, e]
        return out

    def copy(self, x):
        return x.copy()

    def contiguous(self, x):
        """`x` laid out row-major (copied only when it is not)."""
        return np.ascontiguousarray(x)

    def equal(self, a, b) -> bool:
        return np.array_equal(a, b)

    def to_long(self, x):
        return x.astype(np.int64, copy=False)

    def to_float(self, x):
        return x.astype(np.float32)

    def follow(self, x, like, dtype: bool = False):
        """`x` on `like`'s device (and of its dtype with `dtype`): numpy has one device."""
        return x

    def host(self, x):
        """`x` in the computer's memory."""
        return x

    def from_numpy(self, a, like):
        """A numpy array as `like`'s kind of array, on its device and of its dtype."""
        return a

    def to_numpy(self, x):
        return x


NUMPY = Arrays()
