"""minGRU (Feng et al. 2024): gates z, h~ from the input only; a = 1 - z, b = z * h~.  A block of
the minimal family (charrnn.nn.cells.minimal).  Its JavaScript step is ``mingruGates`` in
charrnn/web/sampler.html."""

from charrnn.nn.cells.minimal import Minimal


class MinGRU(Minimal):
    name = "mingru"
    gates = 2
    gate_order = "z,h"
    js_step = "mingruGates"

    def recurrence(self, ops, p):
        zp, hc = ops.split(p, 2)
        z = ops.sigmoid(zp)
        return 1.0 - z, z * hc

    def onnx_recurrence(self, g, p, pre):
        op = g.op
        zp, hc = op("Split", [pre, "split_sizes"], f"{p}_gates", 2, axis=1)
        z = op("Sigmoid", [zp], f"{p}_z")
        return op("Sub", [g.const(1.0), z], f"{p}_a"), op("Mul", [z, hc], f"{p}_b")
