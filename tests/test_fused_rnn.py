"""The CPU-fused LSTM and GRU paths compute what Keras' layers compute, gradients included."""

import numpy as np
import pytest

from charrnn.backend import tensorflow
from charrnn.nn.model import build_model


def _loss_and_grads(model, x, y, states):
    tf = tensorflow()
    with tf.GradientTape() as tape:
        logits, new_states = model(x, states=states, return_state=True, training=True)
        # the final state feeds the loss too, so its gradient path is checked as well
        # (both states of the LSTM's last layer, the GRU's last two layers)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)) \
            + 0.1 * tf.reduce_sum(new_states[-1]) + 0.1 * tf.reduce_sum(new_states[-2])
    grads = tape.gradient(loss, model.trainable_variables)
    return loss, new_states, [tf.convert_to_tensor(g) for g in grads]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_fused_matches_keras_layer(graph, cell):
    tf = tensorflow()
    model = build_model(17, cell, num_layers=2, rnn_size=12, embedding_size=5)
    assert model.fused  # this suite runs on CPUs
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:  # non-zero biases, so their paths are checked too
        v.assign(rng.normal(size=v.shape) * 0.3)
    x = tf.constant(rng.integers(0, 17, (3, 9)), tf.int32)
    y = tf.constant(rng.integers(0, 17, (3, 9)), tf.int32)
    states = [tf.constant(rng.normal(size=(3, 12)) * 2, tf.float32)
              for _ in range(2 * model.states_per_layer)]
    fn = tf.function(_loss_and_grads) if graph else _loss_and_grads

    fused = fn(model, x, y, states)
    model.fused = False
    keras = (tf.function(_loss_and_grads) if graph else _loss_and_grads)(model, x, y, states)

    assert abs(float(fused[0]) - float(keras[0])) < 1e-5
    for a, b in zip(fused[1], keras[1]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    for var, a, b in zip(model.trainable_variables, fused[2], keras[2]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-4, err_msg=var.path)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_bfloat16_close_to_float32(cell):
    tf = tensorflow()
    from charrnn.nn.fused import gru_sequence, lstm_sequence

    rng = np.random.default_rng(1)
    gates = 4 if cell == "lstm" else 3
    x = tf.constant(rng.normal(size=(6, 2, 4)), tf.float32)
    k, u = (tf.constant(rng.normal(size=s) * 0.3, tf.float32)
            for s in ((4, 8 * gates), (8, 8 * gates)))
    if cell == "lstm":
        args = (x, k, u, tf.zeros(32), tf.zeros((2, 8)), tf.zeros((2, 8)))
        run = lstm_sequence
    else:
        args = (x, k, u, tf.zeros((2, 24)), tf.zeros((2, 8)))
        run = gru_sequence
    full = run(*args, "float32")[0].numpy()
    half = run(*args, "bfloat16")[0]
    assert half.dtype == tf.float32  # only matmul operands are rounded
    np.testing.assert_allclose(half.numpy(), full, atol=3e-2)
    assert not np.allclose(half.numpy(), full, atol=1e-7)  # bfloat16 really was used


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_under_mixed_bfloat16_policy(cell):
    """Under Keras' mixed_bfloat16 policy the layer's weights arrive as bfloat16; the fused path
    still returns float32 state and float32 gradients close to the float32 ones."""
    tf = tensorflow()
    from charrnn.train.distribute import precision

    with precision("mixed_bfloat16"):
        model = build_model(11, cell, num_layers=2, rnn_size=8, embedding_size=4)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.integers(0, 11, (2, 5)), tf.int32)
    y = tf.constant(rng.integers(0, 11, (2, 5)), tf.int32)
    states = model.initial_state(2)
    loss, new_states, grads = _loss_and_grads(model, x, y, states)
    assert all(s.dtype == tf.float32 for s in new_states)
    assert all(g.dtype == tf.float32 and np.isfinite(g.numpy()).all() for g in grads)
    model.fused = False
    ref = _loss_and_grads(model, x, y, states)
    assert abs(float(loss) - float(ref[0])) < 0.05
