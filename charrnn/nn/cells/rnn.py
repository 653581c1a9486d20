"""The plain RNN (Keras' SimpleRNN): h' = tanh(x W + h U + b), one block.  Its JavaScript
step is ``rnnUpdate`` in charrnn/web/sampler.html."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charrnn.nn.cells.recurrent import Recurrent

if TYPE_CHECKING:
    from charrnn.nn.cells.base import OnnxGraph
    from charrnn.nn.ops import Array, Ops


class RNN(Recurrent):
    name = "rnn"
    gates = 1
    gate_order = "h"
    keras_layer = "SimpleRNN"
    js_step = "rnnUpdate"

    def update(
        self,
        ops: Ops,
        xz: Array,
        h_in: Array | None,
        layer: dict,
        h: Array,
        c: Array | None = None,
    ) -> tuple[Array, None]:
        a = xz if h_in is None else xz + h_in @ layer["U"]
        return ops.tanh(a), None

    def onnx_layer(self, g: OnnxGraph, i: int, x: str) -> str:
        op, p, h = g.op, f"l{i}", f"state_h_{i}"
        xw = op("MatMul", [x, f"layers.{i}.kernel"], f"{p}_xw")
        hu = op("MatMul", [h, f"layers.{i}.recurrent_kernel"], f"{p}_hu")
        a = op("Add", [op("Add", [xw, hu], f"{p}_a0"), f"layers.{i}.bias"], f"{p}_a")
        return op("Tanh", [a], f"new_state_h_{i}")
