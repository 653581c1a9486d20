"""int8 weights for every export format: weight-only, symmetric, one scale per output channel.

A weight matrix ``W`` becomes ``q = round(W / s)`` (int8 in [-127, 127], zero point 0) and
``s`` (float32), one scale per output channel: per column of a matrix the input is multiplied
by (``x @ W``: columns are the outputs), per row of a table that is looked up by symbol (the
embedding, and the engines' first-layer table, whose rows are what a step reads).  The model
then computes with ``q * s`` in float32: only the stored weights lose precision, never the
activations, so every format holds the same dequantized model and its file can be checked
against it the way a float export is checked against the model.  Biases, norm scales and every
other vector stay float32 (they are a small part of a model, and the most sensitive).

What is a matrix: a tensor of rank 2 whose name (charrnn.nn.tensors' names) is ``embedding`` or
ends in ``kernel``; a GRU's bias (2, 3H) is a bias.  The engines' arrangement
(charrnn.nn.step.Weights) names its matrices ``table``, ``dense`` and the layers' W, U, WU, F1,
F2 (the page and TFLite quantize these: the table is then int8 too).
"""

from __future__ import annotations

import json

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.nn.quant import META_KEY, QMAX, SCALE, dequantize, quantize  # noqa: F401

ENGINE_MATRICES = ("W", "U", "WU", "F1", "F2")


def channel_axis(name: str, shape: tuple[int, ...]) -> int | None:
    """The axis that holds the output channels of the matrix ``name`` (one scale each), or
    None when ``name`` is not a weight matrix (it stays float32).  Named tensors and the
    engines' arrays both."""
    if len(shape) != 2:
        return None
    if name in ("embedding", "table"):
        return 0  # looked up by row
    tail = name.rsplit("/", 1)[-1]
    if name.endswith("kernel") or name == "dense" or ("/" in name and tail in ENGINE_MATRICES):
        return 1  # x @ W: a column per output
    return None


def quantize_all(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """name -> (q, scale, axis) for every weight matrix of ``arrays`` (see channel_axis)."""
    out = {}
    for name, a in arrays.items():
        axis = channel_axis(name, np.shape(a))
        if axis is not None:
            q, s = quantize(a, axis)
            out[name] = (q, s, axis)
    return out


def dequantized(arrays: dict[str, np.ndarray], quantized: dict) -> dict[str, np.ndarray]:
    """``arrays`` with each quantized matrix replaced by its dequantized values."""
    return {
        k: dequantize(*quantized[k]) if k in quantized else np.asarray(v, np.float32)
        for k, v in arrays.items()
    }


# the minimal cells' RMS norm scales and the matrix each multiplies (engines' names)
NORM_INTO = {"norm": "W", "ff_norm": "F1"}


def engine_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The engines' arrays (charrnn.nn.step.Weights.arrays) an int8 export quantizes: without
    the stacked WU = [W; U], which would be a second quantization of the same weights (the
    step then multiplies by W and U apart, as ``sweep`` and the page do); and with each RMS
    norm's scale folded into the matrix after it (rmsnorm(x) * g @ W = rmsnorm(x) @ (g W),
    the scale then ones), as the TFLite converter folds it: so the matrices quantized are
    the ones the file holds."""
    out = {k: np.asarray(v, np.float32) for k, v in arrays.items() if not k.endswith("/WU")}
    pairs = [("final_norm", "dense")] + [
        (k, k.rsplit("/", 1)[0] + "/" + NORM_INTO[k.rsplit("/", 1)[1]])
        for k in out
        if "/" in k and k.rsplit("/", 1)[1] in NORM_INTO
    ]
    for norm, matrix in pairs:
        if norm in out:
            out[matrix] = out[norm][:, None] * out[matrix]
            out[norm] = np.ones_like(out[norm])
    return out


# --- ONNX: each matrix initialiser -> int8 initialiser + scale + DequantizeLinear -----------


def onnx_int8(model, quantized: dict) -> None:
    """Rewrite the float one-step ``model`` (an onnx ModelProto, charrnn.export.onnx_graph)
    in place: each initialiser named in ``quantized`` (name -> (q, scale, axis)) becomes
    ``<name>.q`` (int8), ``<name>.scale`` and ``<name>.zero`` (int8 zeros), and a
    DequantizeLinear node computes ``<name>`` from them, so every node reading it is
    unchanged.  Weight-only: the graph's activations stay float32."""
    from onnx import helper, numpy_helper

    graph = model.graph
    keep = [i for i in graph.initializer if i.name not in quantized]
    nodes = []
    for name, (q, scale, axis) in quantized.items():
        keep += [
            numpy_helper.from_array(q, f"{name}.q"),
            numpy_helper.from_array(scale, f"{name}.scale"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}.zero"),
        ]
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}.q", f"{name}.scale", f"{name}.zero"],
                [name],
                name=f"{name}.dequantize",
                axis=axis,
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(keep)
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)  # topological: the weights first


# --- .safetensors: int8 tensors under their names, float32 scales beside them ---------------


def safetensors_bytes(tensors: dict, quantized: dict, metadata: dict[str, str]) -> bytes:
    """The int8 weights file: every tensor of ``tensors`` under its name, int8 where
    ``quantized`` has it (with ``<name>.scale``), float32 elsewhere, and ``metadata``
    (:func:`metadata`'s); the same weights give the same bytes (weightsfile.encode)."""
    from charrnn.store.weightsfile import encode

    arrays = {}
    for name, a in tensors.items():
        if name in quantized:
            q, scale, _ = quantized[name]
            arrays[name], arrays[name + SCALE] = q, scale
        else:
            arrays[name] = np.ascontiguousarray(a, np.float32)
    return encode(arrays, metadata)


def metadata(metadata: dict[str, str], quantized: dict) -> dict[str, str]:
    """The float file's metadata plus ``int8``: JSON {name: channel axis} of the matrices
    stored as int8 (every format carries it; the .safetensors reader needs it)."""
    axes = {name: int(axis) for name, (_, _, axis) in sorted(quantized.items())}
    return {**metadata, META_KEY: json.dumps(axes)}


# --- TFLite: each matrix constant -> int8 constant (per-channel) + a DEQUANTIZE op ----------


def tflite_int8(flatbuffer: bytes, quantized: dict) -> bytes:
    """Rewrite a float one-step flatbuffer (charrnn.export.formats.tflite_model, traced from
    the dequantized weights): every float32 constant that is one of ``quantized``'s matrices
    -- as the converter stores it, FULLY_CONNECTED's transposed -- becomes an int8 constant
    with its per-channel scales, read through a DEQUANTIZE op; the ops that used it read that
    op's float output instead.  Matched by value, whatever the converter named it."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    by_shape = {}
    for q, scale, axis in quantized.values():
        deq = dequantize(q, scale, axis)
        by_shape.setdefault(deq.shape, []).append((deq, q, scale, axis))
        by_shape.setdefault(deq.T.shape, []).append((deq.T, q.T, scale, 1 - axis))
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
    code.version = 4  # per-channel int8
    model.operatorCodes.append(code)
    dq_ops, renamed, found = [], {}, set()
    for i, t in enumerate(list(graph.tensors)):
        data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if t.type != schema.TensorType.FLOAT32 or data is None or len(t.shape) != 2:
            continue
        value = np.frombuffer(bytes(bytearray(data)), "<f4").reshape(tuple(t.shape))
        match = next(
            (m for m in by_shape.get(value.shape, []) if np.array_equal(m[0], value)), None
        )
        if match is None:
            continue
        _, q, scale, axis = match
        found.add(id(scale))
        out = schema.TensorT()
        out.name, out.shape, out.type = t.name + b"_dequantized", list(t.shape), t.type
        out.buffer = 0  # no data: computed
        graph.tensors.append(out)
        renamed[i] = len(graph.tensors) - 1
        model.buffers[t.buffer].data = np.ascontiguousarray(q, np.int8).view(np.uint8).ravel()
        t.type = schema.TensorType.INT8
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale = [float(s) for s in scale]
        t.quantization.zeroPoint = [0] * len(scale)
        t.quantization.quantizedDimension = int(axis)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = len(model.operatorCodes) - 1, [i], [renamed[i]]
        dq_ops.append(op)
    lost = [k for k, (_, scale, _) in quantized.items() if id(scale) not in found]
    if lost:  # the converter changed a matrix (folded something into it): it would stay float
        raise CharrnnError(
            f"the TFLite file would keep {', '.join(lost)} in float32 (the converter changed "
            "it); nothing was written. Please report this with the model's settings"
        )
    for op in graph.operators:
        op.inputs = [renamed.get(int(j), int(j)) for j in op.inputs]
    graph.operators = dq_ops + list(graph.operators)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
