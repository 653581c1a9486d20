"""The one network definition shared by train, sample and evaluate.

Embedding -> ``num_layers`` layers of the cell -> Dense to vocabulary logits.  The cell
(charrnn.nn.cells) builds its layers and runs them: Keras' recurrent layers with dropout
between them (lstm, gru, rnn), or residual blocks -> RMS norm (mingru, minlstm).  Recurrent
state is passed in and out explicitly, so training can carry it across batches (truncated BPTT)
and sampling can step one symbol at a time at any batch size.

The recurrent layers keep Keras' default activations and use no recurrent
dropout, which keeps them eligible for the cuDNN kernels on a GPU; the weights
are the same either way, so a GPU-trained model loads and samples on a CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from charrnn.backend import tensorflow
from charrnn.nn.cells import get

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf

# The model arguments a run stores (model.json, with vocab_size) and resume/sample rebuild
# the model from; their defaults are the settings' (charrnn.training's model section).
MODEL_ARGS = ("cell", "num_layers", "rnn_size", "embedding_size", "dropout")


def build_model(
    vocab_size: int,
    cell: str,
    *,
    num_layers: int,
    rnn_size: int,
    embedding_size: int,
    dropout: float = 0.0,
) -> keras.Model:
    """Return a built CharRNN (weights created) for ``vocab_size`` symbols."""
    tf = tensorflow()
    model = _model_class()(
        vocab_size,
        cell=cell,
        num_layers=num_layers,
        rnn_size=rnn_size,
        embedding_size=embedding_size,
        dropout=dropout,
    )
    model(tf.zeros((1, 1), tf.int32))  # create the weights
    return model


_CLASS = None


def _model_class():
    # Defined lazily so that importing this module does not import TensorFlow.
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    tf = tensorflow()
    import keras

    class CharRNN(keras.Model):
        def __init__(
            self, vocab_size, cell, num_layers, rnn_size, embedding_size, dropout=0.0, **kwargs
        ):
            super().__init__(**kwargs)
            spec = get(cell)
            self.vocab_size = int(vocab_size)
            self.cell = cell
            self.num_layers = int(num_layers)
            self.rnn_size = int(rnn_size)
            self.embedding_size = spec.embedding_size(rnn_size, embedding_size)
            self.dropout_rate = float(dropout)
            self.embedding = keras.layers.Embedding(
                vocab_size, self.embedding_size, name="embedding"
            )
            spec.build(self, keras, self.dropout_rate)  # self.rnns, self.drop (and its own)
            # Keras 3 keeps the list in a TrackedList, which tf.train.Checkpoint
            # does not follow (keras-team/keras#18398): without one attribute per
            # layer a checkpoint silently drops every recurrent weight.
            for i, rnn in enumerate(self.rnns):
                setattr(self, f"{cell}_{i}", rnn)
            # float32 logits (hence loss) also under a mixed precision policy.
            self.dense = keras.layers.Dense(vocab_size, name="logits", dtype="float32")
            # On CPUs train through the cell's fused pass where it has one (the LSTM's and
            # GRU's: about 2x faster, see benchmarks/); GPUs keep Keras' cuDNN kernels.
            self.fused = spec.fused_call is not None and not tf.config.list_physical_devices("GPU")

        @property
        def states_per_layer(self) -> int:
            return len(get(self.cell).states)

        def initial_state(
            self, batch_size: int | tf.Tensor, dtype: tf.DType = tf.float32
        ) -> list[tf.Tensor]:
            """Zero state: a flat list, ``states_per_layer`` tensors per layer."""
            return [
                tf.zeros((batch_size, self.rnn_size), dtype)
                for _ in range(self.num_layers * self.states_per_layer)
            ]

        def call(
            self,
            inputs: tf.Tensor,
            states: list[tf.Tensor] | None = None,
            return_state: bool = False,
            training: bool = False,
        ) -> tf.Tensor | tuple[tf.Tensor, list[tf.Tensor]]:
            logits, new_states = get(self.cell).call(tf, self, inputs, states, training)
            return (logits, new_states) if return_state else logits

        def get_config(self) -> dict:
            return model_args(self)

    _CLASS = CharRNN
    return CharRNN


def start_from_unigram(model: keras.Model, counts: np.ndarray) -> None:
    """Set the output bias to the log frequency of each symbol (``counts``, add-one
    smoothed), so the new model already predicts the unigram distribution.

    Otherwise the first steps are spent learning the symbol frequencies through the
    bias.  With a large vocabulary that stalls a deeper network: a 2x128 LSTM over 964
    Korean syllables sat at the unigram loss for ~150 of its ~400 steps in 3 minutes,
    and starts learning at once from this bias (benchmarks/RESULTS.md, Quality)."""
    import numpy as np

    model.dense.bias.assign(np.log((counts + 1) / (counts.sum() + len(counts)), dtype=np.float32))


def model_args(model: keras.Model) -> dict:
    """The arguments that rebuild ``model`` with :func:`build_model`."""
    return {
        "vocab_size": model.vocab_size,
        "cell": model.cell,
        "num_layers": model.num_layers,
        "rnn_size": model.rnn_size,
        "embedding_size": model.embedding_size,
        "dropout": model.dropout_rate,
    }
