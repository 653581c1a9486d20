"""The one naming of a model's weights, and the moves between its three homes.

Every weights file, export and engine names the arrays of a model as below (Keras
layout, float32; G = charrnn.nn.cells.GATES[cell]; H = rnn_size):

  embedding                   (vocab_size, embedding_size)
  layers.<i>.kernel           (input size, G*H)   input size: embedding_size for i = 0, else H
  layers.<i>.recurrent_kernel (H, G*H)
  layers.<i>.bias             (G*H,); gru: (2, G*H) = [input bias, recurrent bias]
  logits.kernel               (H, vocab_size)
  logits.bias                 (vocab_size,)

Here they move between a Keras model (charrnn.nn.model), a dict of NumPy arrays under
these names (what .safetensors files, ONNX initialisers and the loader hold), and the
engines' arrangement (charrnn.nn.step.Weights).
"""

import numpy as np

from charrnn.nn.cells import GATES
from charrnn.nn.step import Weights, make_weights

# The model arguments (charrnn.nn.model.build_model) that fix the weights' shapes.
SHAPE_KEYS = ("vocab_size", "cell", "num_layers", "rnn_size", "embedding_size")


def expected_shapes(args) -> dict:
    """Tensor name -> shape for model arguments ``args``."""
    v, e, h, n = (int(args[k]) for k in ("vocab_size", "embedding_size", "rnn_size", "num_layers"))
    g = GATES[args["cell"]] * h
    shapes = {"embedding": (v, e), "logits.kernel": (h, v), "logits.bias": (v,)}
    for i in range(n):
        shapes[f"layers.{i}.kernel"] = (e if i == 0 else h, g)
        shapes[f"layers.{i}.recurrent_kernel"] = (h, g)
        shapes[f"layers.{i}.bias"] = (2, g) if args["cell"] == "gru" else (g,)
    return shapes


def _variables(model) -> dict:
    """name -> the Keras variable that holds it."""
    v = {"embedding": model.embedding.embeddings}
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
    n = sum(1 for k in tensors if k.endswith(".recurrent_kernel"))
    return make_weights(cell, tensors["embedding"],
                        [tensors[f"layers.{i}.kernel"] for i in range(n)],
                        [tensors[f"layers.{i}.recurrent_kernel"] for i in range(n)],
                        [tensors[f"layers.{i}.bias"] for i in range(n)],
                        tensors["logits.kernel"], tensors["logits.bias"])


def weights_from_model(model) -> Weights:
    """The engines' Weights of a built CharRNN."""
    return engine_weights(model.cell, tensors_from_model(model))
