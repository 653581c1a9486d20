"""The one naming of a model's weights, and the moves between its three homes.

Every weights file, export and engine names the arrays of a model as below (Keras
layout, float32; G = charrnn.nn.cells.GATES[cell]; H = rnn_size):

  embedding                   (vocab_size, embedding_size)
  layers.<i>.kernel           (input size, G*H)   input size: embedding_size for i = 0, else H
  layers.<i>.recurrent_kernel (H, G*H)
  layers.<i>.bias             (G*H,); gru: (2, G*H) = [input bias, recurrent bias]
  logits.kernel               (H, vocab_size)
  logits.bias                 (vocab_size,)

The parallel cells (mingru, minlstm; charrnn.nn.cells) have no recurrent kernel; each
layer is a residual block, the embedding H wide (F = FF_MULT * H; nn.cells.block_shapes):

  embedding                   (vocab_size, H)
  layers.<i>.norm             (H,)          RMS norm scale before the cell
  layers.<i>.kernel           (H, G*H)      the cell's input projection
  layers.<i>.bias             (G*H,)
  layers.<i>.ff_norm          (H,)          RMS norm scale before the feed-forward
  layers.<i>.ff_in.kernel     (H, F)   layers.<i>.ff_in.bias  (F,)
  layers.<i>.ff_out.kernel    (F, H)   layers.<i>.ff_out.bias (H,)
  final_norm                  (H,)          RMS norm scale before the logits
  logits.kernel, logits.bias  as above

Here they move between a Keras model (charrnn.nn.model), a dict of NumPy arrays under
these names (what .safetensors files, ONNX initialisers and the loader hold), and the
engines' arrangement (charrnn.nn.step.Weights).
"""

import numpy as np

from charrnn.nn.cells import GATES, PARALLEL, block_shapes
from charrnn.nn.step import Weights, make_parallel_weights, make_weights

# The model arguments (charrnn.nn.model.build_model) that fix the weights' shapes.
SHAPE_KEYS = ("vocab_size", "cell", "num_layers", "rnn_size", "embedding_size")
# A parallel cell's block: tensor name (after "layers.<i>.") -> engine name (Weights).
ENGINE_NAMES = {
    "norm": "norm",
    "kernel": "W",
    "bias": "b",
    "ff_norm": "ff_norm",
    "ff_in.kernel": "F1",
    "ff_in.bias": "f1b",
    "ff_out.kernel": "F2",
    "ff_out.bias": "f2b",
}


def expected_shapes(args) -> dict:
    """Tensor name -> shape for model arguments ``args``."""
    v, e, h, n = (int(args[k]) for k in ("vocab_size", "embedding_size", "rnn_size", "num_layers"))
    g = GATES[args["cell"]] * h
    shapes = {"embedding": (v, e), "logits.kernel": (h, v), "logits.bias": (v,)}
    if args["cell"] in PARALLEL:
        shapes["embedding"] = (v, h)  # the residual stream (nn.cells)
        for i in range(n):
            shapes.update({f"layers.{i}.{k}": s for k, s in block_shapes(args["cell"], h).items()})
        shapes["final_norm"] = (h,)
        return shapes
    for i in range(n):
        shapes[f"layers.{i}.kernel"] = (e if i == 0 else h, g)
        shapes[f"layers.{i}.recurrent_kernel"] = (h, g)
        shapes[f"layers.{i}.bias"] = (2, g) if args["cell"] == "gru" else (g,)
    return shapes


def _variables(model) -> dict:
    """name -> the Keras variable that holds it."""
    v = {"embedding": model.embedding.embeddings}
    if model.cell in PARALLEL:  # charrnn.nn.parallel.MinBlock keeps its variables by name
        for i, block in enumerate(model.rnns):
            v.update({f"layers.{i}.{k}": var for k, var in block.named.items()})
        v["final_norm"] = model.final_norm
        v["logits.kernel"], v["logits.bias"] = model.dense.kernel, model.dense.bias
        return v
    for i, rnn in enumerate(model.rnns):
        v[f"layers.{i}.kernel"] = rnn.cell.kernel
        v[f"layers.{i}.recurrent_kernel"] = rnn.cell.recurrent_kernel
        v[f"layers.{i}.bias"] = rnn.cell.bias
    v["logits.kernel"], v["logits.bias"] = model.dense.kernel, model.dense.bias
    return v


def tensors_from_model(model) -> dict:
    """The arrays of a built CharRNN under their names."""
    return {k: np.ascontiguousarray(v.numpy(), np.float32) for k, v in _variables(model).items()}


def fits(args, tensors: dict) -> list:
    """The names that are missing or of the wrong shape for model arguments ``args``
    (with "extra tensors" when there are more than the model has); [] when they fit."""
    want = expected_shapes(args)
    bad = [k for k in want if k not in tensors or tuple(np.shape(tensors[k])) != want[k]]
    return bad or (["extra tensors"] if set(tensors) != set(want) else [])


def assign_to_model(model, tensors: dict) -> None:
    """Load named arrays into a built CharRNN; they must fit it (readers check files with
    :func:`fits` first and say what is wrong)."""
    bad = fits(model_args_of(model), tensors)
    if bad:
        raise ValueError(f"this set of weights does not fit this model: {', '.join(bad)}")
    for k, var in _variables(model).items():
        var.assign(tensors[k])


def model_args_of(model) -> dict:
    from charrnn.nn.model import model_args

    return model_args(model)


def engine_weights(cell, tensors: dict) -> Weights:
    """The engines' arrangement (charrnn.nn.step.Weights) of named arrays."""
    if cell in PARALLEL:
        n = sum(1 for k in tensors if k.endswith(".ff_norm"))
        blocks = [
            {e: tensors[f"layers.{i}.{k}"] for k, e in ENGINE_NAMES.items()} for i in range(n)
        ]
        return make_parallel_weights(
            cell,
            tensors["embedding"],
            blocks,
            tensors["final_norm"],
            tensors["logits.kernel"],
            tensors["logits.bias"],
        )
    n = sum(1 for k in tensors if k.endswith(".recurrent_kernel"))
    return make_weights(
        cell,
        tensors["embedding"],
        [tensors[f"layers.{i}.kernel"] for i in range(n)],
        [tensors[f"layers.{i}.recurrent_kernel"] for i in range(n)],
        [tensors[f"layers.{i}.bias"] for i in range(n)],
        tensors["logits.kernel"],
        tensors["logits.bias"],
    )


def weights_from_model(model) -> Weights:
    """The engines' Weights of a built CharRNN."""
    return engine_weights(model.cell, tensors_from_model(model))
