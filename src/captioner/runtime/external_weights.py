"""Point an exported decoder-step graph at the model folder's own `decoder.safetensors` instead of carrying
a second copy of the weights (33 MB in float32 for the shipped model; the file written is about 8 KB).

The step export (`captioner.runtime.onnx_runtime.export_step`) holds the fused decoder's tensors as
constants: transposed weights, the two LSTM weight matrices side by side, the two LSTM biases summed
(`captioner.runtime.fused_decoder.InferenceDecoder`). Each is replaced by the same tensor computed from the
stored weights at session start: ONNX external data (the safetensors file's raw bytes at their offsets, in
their stored dtype, e.g. float16), then Cast to float32, Transpose, Concat, Add or Reshape, which ONNX
Runtime folds into constants when it opens the file. A constant is replaced only where the recipe gives
exactly its values (float32, bit for bit), so the graph computes what the export computes; `rewrite`
says which constants it found. Needs the `onnx` package (export time only).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

#: how each fused tensor comes from the decoder's stored weights (see `InferenceDecoder.__init__`)
RECIPES = {
    "hid_w": ("T", ("w", "attention.hidden_proj.weight")),
    "hid_b": ("w", "attention.hidden_proj.bias"),
    "score_w": ("flat", ("w", "attention.score.weight")),
    "gate_w": ("T", ("w", "gate.weight")),
    "gate_b": ("w", "gate.bias"),
    "lstm_w": ("T", ("cat", ("w", "lstm.weight_ih"), ("w", "lstm.weight_hh"))),
    "lstm_b": ("add", ("w", "lstm.bias_ih"), ("w", "lstm.bias_hh")),
    "out_w": ("T", ("w", "out.weight")),
    "out_b": ("w", "out.bias"),
    "embedding": ("w", "embedding.weight"),
}
#: smaller constants stay in the graph (the attention score's bias: one number)
MIN_ELEMENTS = 64
_DTYPES = {"F16": np.float16, "F32": np.float32, "BF16": None}


class SafetensorsFile:
    """The header of a safetensors file and its tensors as numpy arrays (read without torch)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            self.header = {k: v for k, v in json.loads(fh.read(n)).items() if k != "__metadata__"}
        self.data_start = 8 + n

    def span(self, key: str) -> tuple[int, int]:
        """(offset from the file's start, length in bytes) of a tensor's data."""
        begin, end = self.header[key]["data_offsets"]
        return self.data_start + begin, end - begin

    def array(self, key: str) -> np.ndarray:
        entry = self.header[key]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{self.path.name}: {key} is stored as {entry['dtype']}, which this export does not read")
        offset, length = self.span(key)
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return np.frombuffer(fh.read(length), dtype=dtype).reshape(entry["shape"])


def _value(recipe, weights: SafetensorsFile) -> np.ndarray:
    op = recipe[0]
    if op == "w":
        return weights.array(recipe[1]).astype(np.float32)
    if op == "T":
        return np.ascontiguousarray(_value(recipe[1], weights).T)
    if op == "flat":
        return _value(recipe[1], weights).reshape(-1)
    if op == "cat":
        return np.concatenate([_value(recipe[1], weights), _value(recipe[2], weights)], axis=1)
    if op == "add":
        return _value(recipe[1], weights) + _value(recipe[2], weights)
    raise ValueError(op)


class _Emitter:
    """Writes the nodes that rebuild one tensor from the stored weights (each stored tensor read once)."""

    def __init__(self, weights: SafetensorsFile, location: str):
        from onnx import TensorProto

        self.weights, self.location, self.TensorProto = weights, location, TensorProto
        self.nodes, self.initializers, self.leaves, self.n = [], [], {}, 0

    def _name(self) -> str:
        self.n += 1
        return f"stored/{self.n}"

    def leaf(self, key: str) -> str:
        if key in self.leaves:
            return self.leaves[key]
        from onnx import helper

        TensorProto = self.TensorProto
        entry = self.weights.header[key]
        stored_type = {"F16": TensorProto.FLOAT16, "F32": TensorProto.FLOAT}[entry["dtype"]]
        offset, length = self.weights.span(key)
        t = TensorProto(name=f"stored:{key}", data_type=stored_type, dims=entry["shape"],
                        data_location=TensorProto.EXTERNAL)
        for k, v in (("location", self.location), ("offset", str(offset)), ("length", str(length))):
            item = t.external_data.add()
            item.key, item.value = k, v
        self.initializers.append(t)
        name = t.name
        if stored_type != TensorProto.FLOAT:
            name = f"{t.name}:float"
            self.nodes.append(helper.make_node("Cast", [t.name], [name], to=TensorProto.FLOAT))
        self.leaves[key] = name
        return name

    def emit(self, recipe, out: str | None = None) -> str:
        from onnx import helper, numpy_helper

        op = recipe[0]
        if op == "w":
            src = self.leaf(recipe[1])
            if out is None:
                return src
            self.nodes.append(helper.make_node("Identity", [src], [out]))
            return out
        out = out or self._name()
        if op == "T":
            self.nodes.append(helper.make_node("Transpose", [self.emit(recipe[1])], [out], perm=[1, 0]))
        elif op == "flat":
            shape = self._name()
            self.initializers.append(numpy_helper.from_array(np.array([-1], np.int64), shape))
            self.nodes.append(helper.make_node("Reshape", [self.emit(recipe[1]), shape], [out]))
        elif op == "cat":
            self.nodes.append(helper.make_node("Concat", [self.emit(recipe[1]), self.emit(recipe[2])], [out], axis=1))
        elif op == "add":
            self.nodes.append(helper.make_node("Add", [self.emit(recipe[1]), self.emit(recipe[2])], [out]))
        return out


def rewrite(graph_path: str | Path, weights_path: str | Path, out_path: str | Path) -> list[str]:
    """Write `out_path` (in the folder of `weights_path`): the graph at `graph_path` with each large float32
    constant that a recipe rebuilds exactly from `weights_path` read from it instead. Returns the recipes
    used; raises ValueError when one of the large tensors (every recipe but the tiny ones) is not found."""
    import onnx
    from onnx import numpy_helper

    weights = SafetensorsFile(weights_path)
    if Path(out_path).parent.resolve() != weights.path.parent.resolve():
        raise ValueError("the graph must sit beside the weights it reads (ONNX external data is relative)")
    model = onnx.load(str(graph_path))
    graph = model.graph
    constants = {}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for init in graph.initializer:
        constants[init.name] = numpy_helper.to_array(init)
    emitter = _Emitter(weights, weights.path.name)
    replaced, used = set(), []
    for name, recipe in RECIPES.items():
        want = _value(recipe, weights)
        if want.size < MIN_ELEMENTS:
            continue
        hits = [k for k, v in constants.items()
                if v.dtype == np.float32 and v.shape == want.shape and np.array_equal(v, want)]
        if not hits:
            raise ValueError(f"the exported step has no constant equal to {name} rebuilt from {weights.path.name}")
        for k in (k for k in hits if k not in replaced):  # one already rebuilt by an equal recipe stays so
            emitter.emit(recipe, k)
            replaced.add(k)
        used.append(name)
    kept_nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] in replaced)]
    kept_inits = [i for i in graph.initializer if i.name not in replaced]
    del graph.node[:]
    graph.node.extend(emitter.nodes + kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + emitter.initializers)
    onnx.save(model, str(out_path))
    return used
