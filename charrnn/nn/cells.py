"""The recurrent cells charrnn knows, and the facts every layer above needs about them.

One place for: which cells exist, how many weight blocks (gates) a layer's matmul has,
their order in the Keras layout, and which states a layer carries (h, and c for an LSTM).

Two families:
- ``lstm``, ``gru``, ``rnn``: Keras' recurrent layers, gates computed from the input
  and the previous state (a matmul per time step).
- ``mingru``, ``minlstm`` (Feng et al. 2024, "Were RNNs All We Needed?"): gates from the
  input only, so all of a window's matmuls are one large matmul and only an element-wise
  recurrence h_t = a_t * h_{t-1} + b_t is sequential.  Each layer is a residual block:
  x += minRNN(rmsnorm(x)); x += feed-forward(rmsnorm(x)); the output is rmsnorm(x).
  Their embedding is the residual stream, rnn_size wide (charrnn.nn.step has the maths).
"""

CELLS = ("lstm", "gru", "rnn", "mingru", "minlstm")
PARALLEL = ("mingru", "minlstm")  # the cells whose gates depend on the input only
GATES = {
    "lstm": 4,
    "gru": 3,
    "rnn": 1,  # weight blocks per layer (matmul width / units)
    "mingru": 2,
    "minlstm": 3,
}
# Order of the blocks along the G*H axis (Keras'): what the weights file records.
GATE_ORDER = {
    "lstm": "i,f,c,o",
    "gru": "z,r,h (reset_after)",
    "rnn": "h",
    "mingru": "z,h",
    "minlstm": "f,i,h",
}
FF_MULT = 4  # the feed-forward width of a parallel cell's block, in units of rnn_size


def state_names(cell: str) -> tuple:
    """The states one layer carries, in the order of every flat state list."""
    return ("h", "c") if cell == "lstm" else ("h",)


def states_per_layer(cell: str) -> int:
    return len(state_names(cell))


def embedding_size(cell: str, rnn_size: int, asked: int) -> int:
    """The embedding width a model of ``cell`` has: a parallel cell's embedding is its
    residual stream, rnn_size wide, whatever was asked."""
    return int(rnn_size) if cell in PARALLEL else int(asked)


def block_shapes(cell, h) -> dict:
    """A parallel cell's block: tensor name (after "layers.<i>.") -> shape, in the order
    charrnn.nn.parallel.MinBlock creates them."""
    g, f = GATES[cell] * h, FF_MULT * h
    return {
        "norm": (h,),
        "kernel": (h, g),
        "bias": (g,),
        "ff_norm": (h,),
        "ff_in.kernel": (h, f),
        "ff_in.bias": (f,),
        "ff_out.kernel": (f, h),
        "ff_out.bias": (h,),
    }
