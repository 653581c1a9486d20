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
        return ops.tanh(self.preactivation(xz, h_in, layer)), None

    def onnx_layer(self, g: OnnxGraph, i: int, x: str) -> str:
        return g.op("Tanh", [self.onnx_preactivation(g, i, x)], f"new_state_h_{i}")
