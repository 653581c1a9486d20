"""The recurrent cells charrnn knows, and the facts every layer above needs about them.

One place for: which cells exist, how many weight blocks (gates) a layer's matmul has,
their order in the Keras layout, and which states a layer carries (h, and c for an LSTM).
"""

CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per layer (matmul width / units)
# Order of the blocks along the G*H axis (Keras'): what the weights file records.
GATE_ORDER = {"lstm": "i,f,c,o", "gru": "z,r,h (reset_after)", "rnn": "h"}


def state_names(cell: str) -> tuple:
    """The states one layer carries, in the order of every flat state list."""
    return ("h", "c") if cell == "lstm" else ("h",)


def states_per_layer(cell: str) -> int:
    return len(state_names(cell))
