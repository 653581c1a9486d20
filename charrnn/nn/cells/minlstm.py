"""minLSTM (Feng et al. 2024): gates f, i, h~ from the input only, normalised to sum to one:
a = f / (f + i), b = i / (f + i) * h~.  A block of the minimal family
(charrnn.nn.cells.minimal).  Its JavaScript step is ``minlstmGates`` in
charrnn/web/sampler.html."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charrnn.nn.cells.minimal import Minimal

if TYPE_CHECKING:
    from charrnn.nn.cells.base import OnnxGraph
    from charrnn.nn.ops import Array, Ops


class MinLSTM(Minimal):
    name = "minlstm"
    gates = 3
    gate_order = "f,i,h"
    js_step = "minlstmGates"

    def recurrence(self, ops: Ops, p: Array) -> tuple[Array, Array]:
        fp, ip, hc = ops.split(p, 3)
        f, i = ops.sigmoid(fp), ops.sigmoid(ip)
        return f / (f + i), i / (f + i) * hc

    def onnx_recurrence(self, g: OnnxGraph, p: str, pre: str) -> tuple[str, str]:
        op = g.op
        fp, ip, hc = op("Split", [pre, "split_sizes"], f"{p}_gates", 3, axis=1)
        f, ig = op("Sigmoid", [fp], f"{p}_f"), op("Sigmoid", [ip], f"{p}_i")
        s = op("Add", [f, ig], f"{p}_fi")
        return op("Div", [f, s], f"{p}_a"), op("Mul", [op("Div", [ig, s], f"{p}_in"), hc], f"{p}_b")
