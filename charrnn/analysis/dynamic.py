"""Dynamic evaluation (`charrnn evaluate --dynamic`): the model adapts to the text it scores.

The text is read in one stream, ``segment`` symbols at a time, with the recurrent state
carried.  Each segment is scored first -- every symbol's nats come from weights that
have not seen it -- and then the weights take one plain SGD step (learning rate ``lr``)
on that segment's mean loss, so what the text has shown so far (its names, its style)
helps predict the rest: Krause et al., "Dynamic Evaluation of Neural Sequence Models"
(2018), without their RMS scaling and decay towards the trained weights.  The weights
are restored when the text is done, so each file starts from the trained model.
"""

import numpy as np

from charrnn.backend import tensorflow

SEGMENT = 100    # symbols scored per update
LR = 0.003       # SGD learning rate per segment (chosen by measurement: benchmarks/RESULTS.md)


def dynamic_nats(model, ids, segment=SEGMENT, lr=LR) -> np.ndarray:
    """-ln P(ids[t] | ids[:t]) for every t as charrnn.analysis.scoring.symbol_nats gives
    it (NaN at t = 0), with the weights adapting after each segment; the model's weights
    are as they were when this returns."""
    tf = tensorflow()
    import keras

    variables = model.trainable_variables
    saved = [v.numpy() for v in variables]
    sgd = keras.optimizers.SGD(learning_rate=lr)

    @tf.function
    def step(x, y, states):
        with tf.GradientTape() as tape:
            logits, states = model(x, states=states, return_state=True, training=False)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_mean(nll)
        sgd.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return nll, states

    out = np.full(len(ids), np.nan)
    states = model.initial_state(1)
    try:
        for s in range(0, len(ids) - 1, segment):
            e = min(len(ids) - 1, s + segment)
            x = np.asarray(ids[s:e], np.int32)[None]
            y = np.asarray(ids[s + 1:e + 1], np.int32)[None]
            nll, states = step(tf.constant(x), tf.constant(y), states)
            out[s + 1:e + 1] = nll.numpy()[0]
    finally:
        for v, value in zip(variables, saved):
            v.assign(value)
    return out
