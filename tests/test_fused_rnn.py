"""The CPU-fused LSTM and GRU paths compute what Keras' layers compute, gradients included,
beyond what tests/test_cells.py checks of every cell's fused pass (2 layers, eager and in a
graph): the LSTM's wavefront over 1 and 3 layers, dropout masks, bfloat16.

The fused pass is the CPU path: on a machine with a GPU the model keeps Keras' cuDNN layers
(and its matmuls may round through TF32), so every test here skips there."""

import numpy as np
import pytest
from test_cells import loss_and_grads as _loss_and_grads
from test_cells import no_gpu_reason

from charrnn.backend import tensorflow
from charrnn.nn.cells import get
from charrnn.nn.model import build_model


@pytest.fixture(autouse=True)
def _cpu_only():
    reason = no_gpu_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("lstm", 3)])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_fused_matches_keras_layer(graph, cell, layers):
    """The LSTM's wavefront over 1 and 3 layers (layer l runs time t in iteration t + 2l:
    the first and last iterations have idle layers, which must keep their state); 2 layers
    of every fused cell: tests/test_cells.py."""
    tf = tensorflow()
    model = build_model(17, cell, num_layers=layers, rnn_size=12, embedding_size=5)
    assert model.fused  # this suite runs on CPUs
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:  # non-zero biases, so their paths are checked too
        v.assign(rng.normal(size=v.shape) * 0.3)
    x = tf.constant(rng.integers(0, 17, (3, 9)), tf.int32)
    y = tf.constant(rng.integers(0, 17, (3, 9)), tf.int32)
    states = [
        tf.constant(rng.normal(size=(3, 12)) * 2, tf.float32)
        for _ in range(layers * model.states_per_layer)
    ]
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
    from charrnn.nn.cells.gru import gru_sequence
    from charrnn.nn.cells.lstm import lstm_stack

    rng = np.random.default_rng(1)
    gates = get(cell).gates
    k, u = (
        tf.constant(rng.normal(size=s) * 0.3, tf.float32) for s in ((4, 8 * gates), (8, 8 * gates))
    )
    if cell == "lstm":
        ids = tf.constant(rng.integers(0, 5, (6, 2)), tf.int32)
        embedding = tf.constant(rng.normal(size=(5, 4)), tf.float32)
        zeros = tf.zeros((2, 8))

        def run(dtype):
            return lstm_stack(ids, embedding, [(k, u, tf.zeros(32))], [zeros, zeros], None, dtype)
    else:
        x = tf.constant(rng.normal(size=(6, 2, 4)), tf.float32)

        def run(dtype):
            return gru_sequence(x, k, u, tf.zeros((2, 24)), tf.zeros((2, 8)), dtype)

    full = run("float32")[0].numpy()
    half = run("bfloat16")[0]
    assert half.dtype == tf.float32  # only matmul operands are rounded
    np.testing.assert_allclose(half.numpy(), full, atol=3e-2)
    assert not np.allclose(half.numpy(), full, atol=1e-7)  # bfloat16 really was used


@pytest.mark.parametrize("T", [7, 1])
def test_lstm_stack_dropout_masks_match_keras_layers(T):
    """The dropout between layers is drawn up front as masks; the wavefront applies them
    where Keras' layers with the same masks multiplied in between would, gradients too
    (also for a window of one step, shorter than the wavefront's lag)."""
    tf = tensorflow()
    import keras

    from charrnn.nn.cells.lstm import lstm_stack

    rng = np.random.default_rng(3)
    B, H, V, E = 3, 6, 9, 4
    ids = tf.constant(rng.integers(0, V, (T, B)), tf.int32)
    embedding = tf.Variable(rng.normal(size=(V, E)), dtype=tf.float32)
    layers = [keras.layers.LSTM(H, return_sequences=True, return_state=True) for _ in range(3)]
    for i, layer in enumerate(layers):
        layer.build((None, None, E if i == 0 else H))
        for v in layer.weights:
            v.assign(rng.normal(size=v.shape) * 0.4)
    masks = [tf.constant((rng.random((T, B, H)) > 0.3) / 0.7, tf.float32) for _ in range(2)]
    states = [tf.constant(rng.normal(size=(B, H)), tf.float32) for _ in range(6)]
    variables = [embedding] + [v for layer in layers for v in layer.trainable_weights]

    def loss_of(out, final):
        return tf.reduce_sum(out * out) + tf.reduce_sum(final[-1]) + tf.reduce_sum(final[2])

    with tf.GradientTape() as tape:
        out, *final = lstm_stack(
            ids,
            embedding,
            [(layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias) for layer in layers],
            states,
            masks,
        )
        loss = loss_of(out, final)
    got = [loss, *final, *tape.gradient(loss, variables)]
    with tf.GradientTape() as tape:
        x, ref_final = tf.transpose(tf.gather(embedding, ids), [1, 0, 2]), []
        for i, layer in enumerate(layers):
            x, h, c = layer(x, initial_state=states[2 * i : 2 * i + 2])
            ref_final += [h, c]
            if i < 2:
                x = x * tf.transpose(masks[i], [1, 0, 2])
        loss = loss_of(tf.transpose(x, [1, 0, 2]), ref_final)
    want = [loss, *ref_final, *tape.gradient(loss, variables)]
    for a, b in zip(got, want):
        np.testing.assert_allclose(
            tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(), atol=2e-5, rtol=1e-4
        )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_under_mixed_bfloat16_policy(cell):
    """Under Keras' mixed_bfloat16 policy the layer's weights arrive as bfloat16; the fused path
    still returns float32 state and float32 gradients close to the float32 ones."""
    tf = tensorflow()
    from charrnn.training.distribute import precision

    with precision("mixed_bfloat16"):
        model = build_model(11, cell, num_layers=2, rnn_size=8, embedding_size=4)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.integers(0, 11, (2, 5)), tf.int32)
    y = tf.constant(rng.integers(0, 11, (2, 5)), tf.int32)
    states = model.initial_state(2)
    assert model.fused
    loss, new_states, grads = _loss_and_grads(model, x, y, states)
    assert all(s.dtype == tf.float32 for s in new_states)
    assert all(g.dtype == tf.float32 and np.isfinite(g.numpy()).all() for g in grads)
    model.fused = False
    ref = _loss_and_grads(model, x, y, states)
    assert abs(float(loss) - float(ref[0])) < 0.05
