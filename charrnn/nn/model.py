"""The one network definition shared by train, sample and evaluate.

Embedding -> ``num_layers`` recurrent layers (LSTM, GRU or plain RNN) with
dropout between them -> Dense to vocabulary logits; or, for the parallel cells
(mingru, minlstm), residual blocks (charrnn.nn.parallel) -> RMS norm -> Dense.
Recurrent state is passed
in and out explicitly, so training can carry it across batches (truncated
BPTT) and sampling can step one symbol at a time at any batch size.

The recurrent layers keep Keras' default activations and use no recurrent
dropout, which keeps them eligible for the cuDNN kernels on a GPU; the weights
are the same either way, so a GPU-trained model loads and samples on a CPU.
"""

from charrnn.backend import tensorflow
from charrnn.nn.cells import CELLS, PARALLEL, states_per_layer
from charrnn.nn.cells import embedding_size as cell_embedding_size

# The model arguments a run stores and resume/sample rebuild the model from.
MODEL_DEFAULTS = {
    "cell": "lstm",
    "num_layers": 2,
    "rnn_size": 128,
    "embedding_size": 64,
    "dropout": 0.0,
}


def build_model(
    vocab_size: int, cell="lstm", num_layers=2, rnn_size=128, embedding_size=64, dropout=0.0
):
    """Return a built :class:`CharRNN` (weights created) for ``vocab_size`` symbols."""
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

    from charrnn.nn.parallel import min_block_class

    layer_types = {
        "lstm": keras.layers.LSTM,
        "gru": keras.layers.GRU,
        "rnn": keras.layers.SimpleRNN,
    }

    class CharRNN(keras.Model):
        def __init__(
            self,
            vocab_size,
            cell="lstm",
            num_layers=2,
            rnn_size=128,
            embedding_size=64,
            dropout=0.0,
            **kwargs,
        ):
            super().__init__(**kwargs)
            if cell not in CELLS:
                raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
            self.vocab_size = int(vocab_size)
            self.cell = cell
            self.num_layers = int(num_layers)
            self.rnn_size = int(rnn_size)
            self.embedding_size = cell_embedding_size(cell, rnn_size, embedding_size)
            self.dropout_rate = float(dropout)
            self.embedding = keras.layers.Embedding(
                vocab_size, self.embedding_size, name="embedding"
            )
            if cell in PARALLEL:
                self.rnns = [
                    min_block_class()(cell, rnn_size, dropout, name=f"{cell}_{i}")
                    for i in range(num_layers)
                ]
                self.final_norm = self.add_weight(
                    name="final_norm", shape=(rnn_size,), initializer="ones"
                )
            else:
                self.rnns = [
                    layer_types[cell](
                        rnn_size, return_sequences=True, return_state=True, name=f"{cell}_{i}"
                    )
                    for i in range(num_layers)
                ]
            # Keras 3 keeps the list in a TrackedList, which tf.train.Checkpoint
            # does not follow (keras-team/keras#18398): without one attribute per
            # layer a checkpoint silently drops every recurrent weight.
            for i, rnn in enumerate(self.rnns):
                setattr(self, f"{cell}_{i}", rnn)
            # between layers; the parallel cells' blocks drop on their residual branches
            self.drop = (
                keras.layers.Dropout(dropout) if dropout > 0 and cell not in PARALLEL else None
            )
            # float32 logits (hence loss) also under a mixed precision policy.
            self.dense = keras.layers.Dense(vocab_size, name="logits", dtype="float32")
            # On CPUs run the LSTM/GRU layers' own weights through charrnn.nn.fused (about
            # 2x faster to train, see benchmarks/); GPUs keep Keras' cuDNN kernels.
            self.fused = cell in ("lstm", "gru") and not tf.config.list_physical_devices("GPU")

        @property
        def states_per_layer(self):
            return states_per_layer(self.cell)

        def initial_state(self, batch_size, dtype=tf.float32):
            """Zero state: a flat list, ``states_per_layer`` tensors per layer."""
            return [
                tf.zeros((batch_size, self.rnn_size), dtype)
                for _ in range(self.num_layers * self.states_per_layer)
            ]

        def call(self, inputs, states=None, return_state=False, training=False):
            run = (
                _call_parallel
                if self.cell in PARALLEL
                else _call_fused
                if self.fused
                else _call_layers
            )
            logits, new_states = run(tf, self, inputs, states, training)
            return (logits, new_states) if return_state else logits

        def get_config(self):
            return model_args(self)

    _CLASS = CharRNN
    return CharRNN


def _call_layers(tf, model, inputs, states, training):
    """Keras' own recurrent layers (cuDNN on a GPU): (logits, new states)."""
    x = model.embedding(inputs, training=training)
    k = model.states_per_layer
    new_states = []
    for i, rnn in enumerate(model.rnns):
        init = None if states is None else list(states[i * k : (i + 1) * k])
        x, *layer_states = rnn(x, initial_state=init, training=training)
        # float32 out whatever the compute dtype, so carried state keeps one dtype
        new_states.extend(tf.cast(s, tf.float32) for s in layer_states)
        if model.drop is not None:
            x = model.drop(x, training=training)
    return model.dense(x, training=training), new_states


def _call_fused(tf, model, inputs, states, training):
    """The same layers' weights through charrnn.nn.fused (CPUs): (logits, new states)."""
    from charrnn.nn.fused import gru_sequence, lstm_stack

    ids = tf.transpose(inputs)  # time-major: transposing the ids is cheaper than the embeddings
    if states is None:
        states = model.initial_state(tf.shape(inputs)[0])
    if not model.embedding.built:
        model.embedding.build((None,))
    for i, rnn in enumerate(model.rnns):
        if not rnn.built:
            rnn.build((None, None, model.embedding_size if i == 0 else model.rnn_size))
    if model.cell == "lstm":  # the whole stack in one loop, embedding included
        masks = None
        if model.drop is not None and training:  # the dropout between layers, drawn up front
            ones = tf.ones([tf.shape(ids)[0], tf.shape(ids)[1], model.rnn_size])
            masks = [model.drop(ones, training=True) for _ in model.rnns[1:]]
        x, *new_states = lstm_stack(
            ids,
            model.embedding.embeddings,
            [(r.cell.kernel, r.cell.recurrent_kernel, r.cell.bias) for r in model.rnns],
            states,
            masks,
            model.rnns[0].compute_dtype,
        )
        if model.drop is not None:
            x = model.drop(x, training=training)
    else:
        x = model.embedding(ids, training=training)
        new_states = []
        for i, rnn in enumerate(model.rnns):
            cell = rnn.cell
            x, h = gru_sequence(
                x, cell.kernel, cell.recurrent_kernel, cell.bias, states[i], rnn.compute_dtype
            )
            new_states.append(h)
            if model.drop is not None:
                x = model.drop(x, training=training)
    # Dense on 2-D rows: a plain matmul (on 3-D input Keras uses a slower einsum)
    shape = tf.shape(x)
    logits = model.dense(tf.reshape(x, [-1, model.rnn_size]), training=training)
    logits = tf.reshape(logits, [shape[0], shape[1], model.vocab_size])
    return tf.transpose(logits, [1, 0, 2]), new_states


def _call_parallel(tf, model, inputs, states, training):
    """The parallel cells' residual blocks over a time-major window: (logits, new states)."""
    from charrnn.nn.step import rms_norm, tf_ops

    x = tf.cast(model.embedding(tf.transpose(inputs), training=training), tf.float32)
    if states is None:
        states = model.initial_state(tf.shape(inputs)[0])
    new_states = []
    for block, h0 in zip(model.rnns, states):
        x, h = block(x, tf.cast(h0, tf.float32), training=training)
        new_states.append(h)
    shape = tf.shape(x)
    rows = rms_norm(tf_ops()[1], tf.reshape(x, [-1, model.rnn_size]), model.final_norm)
    logits = tf.reshape(model.dense(rows, training=training), [shape[0], shape[1], -1])
    return tf.transpose(logits, [1, 0, 2]), new_states


def start_from_unigram(model, counts) -> None:
    """Set the output bias to the log frequency of each symbol (``counts``, add-one
    smoothed), so the new model already predicts the unigram distribution.

    Otherwise the first steps are spent learning the symbol frequencies through the
    bias.  With a large vocabulary that stalls a deeper network: a 2x128 LSTM over 964
    Korean syllables sat at the unigram loss for ~150 of its ~400 steps in 3 minutes,
    and starts learning at once from this bias (benchmarks/RESULTS.md, Quality)."""
    import numpy as np

    model.dense.bias.assign(np.log((counts + 1) / (counts.sum() + len(counts)), dtype=np.float32))


def model_args(model) -> dict:
    """The arguments that rebuild ``model`` with :func:`build_model`."""
    return {
        "vocab_size": model.vocab_size,
        "cell": model.cell,
        "num_layers": model.num_layers,
        "rnn_size": model.rnn_size,
        "embedding_size": model.embedding_size,
        "dropout": model.dropout_rate,
    }
