"""Dynamic evaluation (`charrnn evaluate --dynamic`): the model adapts to the text it scores.

The text is read in one stream, ``segment`` symbols at a time, with the recurrent state
carried.  Each segment is scored first -- every symbol's nats come from weights that
have not seen it -- and then the weights take one plain SGD step (learning rate ``lr``)
on that segment's mean loss, so what the text has shown so far (its names, its style)
helps predict the rest: Krause et al., "Dynamic Evaluation of Neural Sequence Models"
(2018), without their RMS scaling and decay towards the trained weights.  The weights
are restored when the text is done, so each file starts from the trained model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from charrnn.backend import tensorflow

if TYPE_CHECKING:
    import keras

    from charrnn.analysis.scoring import NatsOf

# Chosen on the held-out tails of three corpora (benchmarks/RESULTS.md, 'evaluate --dynamic'):
# the best of 0.01-1.0 x 25-200 symbols across them, or close to it
SEGMENT = 50  # symbols scored per update
LR = 0.1  # SGD learning rate per segment


def dynamic_scorer(model: keras.Model, segment: int = SEGMENT, lr: float = LR) -> NatsOf:
    """``nats_of(ids)``: -ln P(ids[t] | ids[:t]) for every t as
    charrnn.analysis.scoring.symbol_nats gives it (NaN at t = 0), the weights adapting
    after each segment and restored at the end.  The step is compiled once (the last,
    shorter segment is padded and masked), so it serves every file of a run."""
    tf = tensorflow()
    import keras

    variables = model.trainable_variables
    sgd = keras.optimizers.SGD(learning_rate=lr)

    @tf.function
    def step(x, y, mask, states):
        with tf.GradientTape() as tape:
            logits, states = model(x, states=states, return_state=True, training=False)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_sum(nll * mask) / tf.reduce_sum(mask)
        sgd.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return nll, states

    def nats_of(ids: np.ndarray) -> np.ndarray:
        saved = [v.numpy() for v in variables]
        out = np.full(len(ids), np.nan)
        states = model.initial_state(1)
        try:
            for s in range(0, len(ids) - 1, segment):
                n = min(segment, len(ids) - 1 - s)
                x, y, mask = (
                    np.zeros((1, segment), np.int32),
                    np.zeros((1, segment), np.int32),
                    np.zeros((1, segment), np.float32),
                )
                x[0, :n], y[0, :n], mask[0, :n] = ids[s : s + n], ids[s + 1 : s + n + 1], 1
                nll, states = step(tf.constant(x), tf.constant(y), tf.constant(mask), states)
                out[s + 1 : s + n + 1] = nll.numpy()[0, :n]
        finally:
            for v, value in zip(variables, saved):
                v.assign(value)
        return out

    return nats_of
