"""The ONNX one-step graph, written op by op from the weight arrays (charrnn.nn.tensors'
names), as charrnn.nn.step computes it: the graph's inputs and outputs here, each layer's nodes
by its cell (charrnn.nn.cells: ``onnx_layer``).  The converters from Keras are broken on Keras 3.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.nn.cells import get

if TYPE_CHECKING:
    import onnx

ONNX_OPSET = 17
EXTRA = "pip install 'charrnn-lab[export]'"


def need(module: str) -> ModuleType:
    """Import an optional export package, or one error saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise CharrnnError(
            f"exporting this format needs the Python package {module.split('.')[0]!r}; "
            f"install it with {EXTRA}"
        ) from None


class _Graph:
    """Nodes and initialisers being written; every value is named by a string."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self.helper = need("onnx").helper
        self.numpy_helper = need("onnx.numpy_helper")
        self.nodes = []
        self.inits = [
            self.numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in tensors.items()
        ]

    def array(self, value: np.ndarray, name: str) -> str:
        self.inits.append(self.numpy_helper.from_array(value, name))
        return name

    def const(self, value: float) -> str:
        """A float32 scalar initialiser, named by its value."""
        name = f"const_{value!r}"
        if name not in {i.name for i in self.inits}:
            self.array(np.array(value, np.float32), name)
        return name

    def op(
        self, kind: str, inputs: list[str], name: str, n_out: int = 1, **attrs: Any
    ) -> str | list[str]:
        outs = [name] if n_out == 1 else [f"{name}_{j}" for j in range(n_out)]
        self.nodes.append(self.helper.make_node(kind, inputs, outs, name=f"{name}_op", **attrs))
        return outs[0] if n_out == 1 else outs


def onnx_model(
    tensors: dict[str, np.ndarray], args: dict, metadata: dict[str, str] | None = None
) -> onnx.ModelProto:
    """The one-step graph as an onnx ModelProto, from the weights file's arrays."""
    onnx = need("onnx")
    from onnx import TensorProto, helper

    cell, n, H, V = args["cell"], args["num_layers"], args["rnn_size"], args["vocab_size"]
    spec = get(cell)
    g = _Graph(tensors)
    spec.onnx_setup(g, H)
    ins = [helper.make_tensor_value_info("ids", TensorProto.INT32, ["batch"])]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", V])]
    for i in range(n):
        for s in spec.states:
            ins.append(
                helper.make_tensor_value_info(f"state_{s}_{i}", TensorProto.FLOAT, ["batch", H])
            )
            outs.append(
                helper.make_tensor_value_info(f"new_state_{s}_{i}", TensorProto.FLOAT, ["batch", H])
            )
    x = g.op("Gather", ["embedding", "ids"], "embedded", axis=0)
    for i in range(n):
        x = spec.onnx_layer(g, i, x)
    x = spec.onnx_output(g, x)
    g.op("Add", [g.op("MatMul", [x, "logits.kernel"], "logits_mm"), "logits.bias"], "logits")
    graph = helper.make_graph(g.nodes, "charrnn_step", ins, outs, g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="charrnn"
    )
    model.ir_version = 8  # what onnxruntime releases since 1.14 read
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model
