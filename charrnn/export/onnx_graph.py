"""The ONNX one-step graph, written op by op from the weight arrays (charrnn.nn.tensors'
names), as charrnn.nn.step computes it: a layer of LSTM/GRU/RNN (``layer_update``) or a
parallel cell's block (``_parallel_step``).  The converters from Keras are broken on Keras 3.
"""

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.nn.cells import GATES, PARALLEL, state_names
from charrnn.nn.step import RMS_EPS

ONNX_OPSET = 17
EXTRA = "pip install 'charrnn[export]'"


def need(module):
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

    def __init__(self, tensors):
        self.helper = need("onnx").helper
        self.numpy_helper = need("onnx.numpy_helper")
        self.nodes = []
        self.inits = [
            self.numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in tensors.items()
        ]

    def array(self, value, name):
        self.inits.append(self.numpy_helper.from_array(value, name))
        return name

    def const(self, value):
        """A float32 scalar initialiser, named by its value."""
        name = f"const_{value!r}"
        if name not in {i.name for i in self.inits}:
            self.array(np.array(value, np.float32), name)
        return name

    def op(self, kind, inputs, name, n_out=1, **attrs):
        outs = [name] if n_out == 1 else [f"{name}_{j}" for j in range(n_out)]
        self.nodes.append(self.helper.make_node(kind, inputs, outs, name=f"{name}_op", **attrs))
        return outs[0] if n_out == 1 else outs


def onnx_model(tensors, args, metadata=None):
    """The one-step graph as an onnx ModelProto, from the weights file's arrays."""
    onnx = need("onnx")
    from onnx import TensorProto, helper

    cell, n, H, V = args["cell"], args["num_layers"], args["rnn_size"], args["vocab_size"]
    g = _Graph(tensors)
    if cell != "rnn":
        g.array(np.full(GATES[cell], H, np.int64), "split_sizes")
    if cell == "gru":  # the two rows of Keras' GRU bias: input and recurrent
        g.array(np.array([1, 1], np.int64), "two_rows")
    ins = [helper.make_tensor_value_info("ids", TensorProto.INT32, ["batch"])]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", V])]
    for i in range(n):
        for s in state_names(cell):
            ins.append(
                helper.make_tensor_value_info(f"state_{s}_{i}", TensorProto.FLOAT, ["batch", H])
            )
            outs.append(
                helper.make_tensor_value_info(f"new_state_{s}_{i}", TensorProto.FLOAT, ["batch", H])
            )
    x = g.op("Gather", ["embedding", "ids"], "embedded", axis=0)
    for i in range(n):
        x = (_parallel_block if cell in PARALLEL else _recurrent_layer)(g, cell, i, x)
    if cell in PARALLEL:
        x = _rms_norm(g, x, "final_norm", "final_n")
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


def _recurrent_layer(g, cell, i, x):
    """LSTM, GRU, RNN: charrnn.nn.step.layer_update; the new h (and c) are graph outputs."""
    op, p, h = g.op, f"l{i}", f"state_h_{i}"
    xw = op("MatMul", [x, f"layers.{i}.kernel"], f"{p}_xw")
    hu = op("MatMul", [h, f"layers.{i}.recurrent_kernel"], f"{p}_hu")
    if cell == "gru":
        b_in, b_rec = op("Split", [f"layers.{i}.bias", "two_rows"], f"{p}_b", 2, axis=0)
        # (batch, 3H) + (1, 3H) broadcasts
        xz = op("Split", [op("Add", [xw, b_in], f"{p}_xz"), "split_sizes"], f"{p}_x", 3, axis=1)
        hz = op("Split", [op("Add", [hu, b_rec], f"{p}_hz"), "split_sizes"], f"{p}_h", 3, axis=1)
        z = op("Sigmoid", [op("Add", [xz[0], hz[0]], f"{p}_za")], f"{p}_z")
        r = op("Sigmoid", [op("Add", [xz[1], hz[1]], f"{p}_ra")], f"{p}_r")
        cand = op(
            "Tanh", [op("Add", [xz[2], op("Mul", [r, hz[2]], f"{p}_rh")], f"{p}_ca")], f"{p}_cand"
        )
        keep = op("Mul", [z, h], f"{p}_keep")
        new = op("Mul", [op("Sub", [g.const(1.0), z], f"{p}_1mz"), cand], f"{p}_new")
        return op("Add", [keep, new], f"new_state_h_{i}")
    a = op("Add", [op("Add", [xw, hu], f"{p}_a0"), f"layers.{i}.bias"], f"{p}_a")
    if cell == "rnn":
        return op("Tanh", [a], f"new_state_h_{i}")
    ig, fg, cg, og = op("Split", [a, "split_sizes"], f"{p}_gates", 4, axis=1)
    c = op(
        "Add",
        [
            op("Mul", [op("Sigmoid", [fg], f"{p}_f"), f"state_c_{i}"], f"{p}_fc"),
            op("Mul", [op("Sigmoid", [ig], f"{p}_i"), op("Tanh", [cg], f"{p}_g")], f"{p}_ig"),
        ],
        f"new_state_c_{i}",
    )
    return op(
        "Mul", [op("Sigmoid", [og], f"{p}_o"), op("Tanh", [c], f"{p}_tc")], f"new_state_h_{i}"
    )


def _parallel_block(g, cell, i, x):
    """A parallel cell's block, op for op as charrnn.nn.step._parallel_step."""
    op, p, t = g.op, f"l{i}", f"layers.{i}."
    pre = op(
        "Add",
        [
            op("MatMul", [_rms_norm(g, x, t + "norm", f"{p}_n"), t + "kernel"], f"{p}_xw"),
            t + "bias",
        ],
        f"{p}_p",
    )
    if cell == "mingru":  # a = 1 - z, b = z * h~
        zp, hc = op("Split", [pre, "split_sizes"], f"{p}_gates", 2, axis=1)
        z = op("Sigmoid", [zp], f"{p}_z")
        a, b = op("Sub", [g.const(1.0), z], f"{p}_a"), op("Mul", [z, hc], f"{p}_b")
    else:  # minlstm: a = f / (f + i), b = i / (f + i) * h~
        fp, ip, hc = op("Split", [pre, "split_sizes"], f"{p}_gates", 3, axis=1)
        f, ig = op("Sigmoid", [fp], f"{p}_f"), op("Sigmoid", [ip], f"{p}_i")
        s = op("Add", [f, ig], f"{p}_fi")
        a = op("Div", [f, s], f"{p}_a")
        b = op("Mul", [op("Div", [ig, s], f"{p}_in"), hc], f"{p}_b")
    h = op("Add", [op("Mul", [a, f"state_h_{i}"], f"{p}_ah"), b], f"new_state_h_{i}")
    x = op("Add", [x, h], f"{p}_x1")
    f1 = op(
        "Add",
        [
            op(
                "MatMul", [_rms_norm(g, x, t + "ff_norm", f"{p}_fn"), t + "ff_in.kernel"], f"{p}_f1"
            ),
            t + "ff_in.bias",
        ],
        f"{p}_f1b",
    )
    r = op("Relu", [f1], f"{p}_relu")  # squared ReLU, as charrnn.nn.step.relu2
    y = op(
        "Add",
        [
            op("MatMul", [op("Mul", [r, r], f"{p}_r2"), t + "ff_out.kernel"], f"{p}_f2"),
            t + "ff_out.bias",
        ],
        f"{p}_f2b",
    )
    return op("Add", [x, y], f"{p}_x2")


def _rms_norm(g, x, scale, p):
    op = g.op
    ms = op("ReduceMean", [op("Mul", [x, x], f"{p}_sq")], f"{p}_ms", axes=[-1], keepdims=1)
    r = op(
        "Reciprocal",
        [op("Sqrt", [op("Add", [ms, g.const(RMS_EPS)], f"{p}_mse")], f"{p}_rms")],
        f"{p}_r",
    )
    return op("Mul", [op("Mul", [x, r], f"{p}_xr"), scale], f"{p}_out")
