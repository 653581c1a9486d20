"""minGRU (Feng et al. 2024): gates z, h~ from the input only; a = 1 - z, b = z * h~.  A block of
the minimal family (charrnn.nn.cells.minimal).  Its JavaScript step is ``mingruGates`` in
charrnn/web/sampler.html."""

from __future__ import annotations

from typing import TYPE_CHECKING

from charrnn.nn.cells.minimal import Minimal

if TYPE_CHECKING:
    from charrnn.nn.cells.base import OnnxGraph
    from charrnn.nn.ops import Array, Ops


class MinGRU(Minimal):
    name = "mingru"
    gates = 2
    gate_order = "z,h"
    js_step = "mingruGates"

    def recurrence(self, ops: Ops, p: Array) -> tuple[Array, Array]:
        zp, hc = ops.split(p, 2)
        z = ops.sigmoid(zp)
        return 1.0 - z, z * hc

    def onnx_recurrence(self, g: OnnxGraph, p: str, pre: str) -> tuple[str, str]:
        op = g.op
        zp, hc = op("Split", [pre, "split_sizes"], f"{p}_gates", 2, axis=1)
        z = op("Sigmoid", [zp], f"{p}_z")
        return op("Sub", [g.const(1.0), z], f"{p}_a"), op("Mul", [z, hc], f"{p}_b")
