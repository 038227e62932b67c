"""`arrays_of(x)`: the array operations (`captioner.decoding.array_ops`) for numpy arrays or torch tensors.

The torch operations (`captioner.decoding.torch_arrays`) are imported only when a tensor is seen, so this
module and the numpy path never import torch.
"""
from __future__ import annotations

import numpy as np

from captioner.decoding.array_ops import NUMPY, Arrays

__all__ = ["NUMPY", "Arrays", "arrays_of"]


def arrays_of(x) -> Arrays:
    """The operations for `x`'s kind of array: `NUMPY` for a numpy array, the torch ones for a tensor."""
    if isinstance(x, np.ndarray):
        return NUMPY
    from captioner.decoding.torch_arrays import TORCH

    return TORCH
