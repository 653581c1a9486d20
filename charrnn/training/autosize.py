"""`model: auto`: the model size a time budget can train best, chosen before training starts.

The rule (derived from the sweeps in benchmarks/bench_quality.py; benchmarks/RESULTS.md,
"Quality"):

1. Throughput.  How many symbols a second each candidate size trains here is predicted from
   its cost per symbol (``cost_per_symbol``: its multiply-adds, and the softmax over the
   vocabulary counted as ``SOFTMAX_MACS`` multiply-adds a symbol of the vocabulary) by the
   throughputs measured on one machine (``CALIBRATION``),
   scaled by how fast this machine runs a small one-thread matrix-multiply probe now
   against the probe on that machine (``probe``, NumPy, about 0.3 s, before TensorFlow
   starts).  ``model.auto_throughput`` gives the symbols/s of the reference 2x256 LSTM
   instead (no probe; what tests use).  The calibration is of LSTMs; other cells are
   predicted from their multiply-adds alike (for mingru/minlstm, whose matmuls span a
   whole window, this is not measured).
2. Size.  Each candidate of ``LADDER`` would see ``budget x throughput`` symbols.  Take the
   largest whose budget gives it at least ``TOKENS_PER_PARAM`` symbols per weight: below
   that a smaller network that sees more text wins in the same time.  Measured
   (benchmarks/RESULTS.md, Quality): at 3 minutes the winners read 77-85 symbols per weight
   and the losers 18 or
   fewer (tiny-shakespeare and C); at 10 minutes on a 6x faster machine a 2x256 LSTM that
   read 43 per weight beat a 2x128.  Hence 30.
3. Dropout from how hard the budget can overfit: ``exposure = epochs x parameters / train
   symbols`` (how often the data is read, times the capacity to memorise it); none up to
   ``DROPOUT_FROM``, then 0.1 per doubling, at most ``DROPOUT_MAX``.  Fitted to the 2x256
   Shakespeare runs: 0.1 beat 0.25 at 2 epochs (exposure 1.7); 0.25-0.35 beat 0.1 at 25-36
   epochs (exposure 22-31).

4. Cell (``model.cell: auto``, which ``model: auto`` implies).  ``mingru`` where the LSTM of
   rule 2 would read the train split fewer than ``PARALLEL_BELOW_EPOCHS`` times in the
   budget, or the vocabulary has at least ``PARALLEL_FROM_VOCAB`` symbols; else ``lstm``.
   Measured side by side at 3 and 10 minutes (benchmarks/RESULTS.md, "Parallel cells"):
   minGRU won on C (the LSTM read it 4.5 and 7 times) by 0.05-0.08 nats on validation and
   on Korean syllables (964 symbols, read 18-40 times) by 0.02-0.12; the LSTM won on
   tiny-shakespeare (65 symbols, read 10-16 times) by 0.03-0.04.  Three corpora: the
   boundary is where these fall, not a law.

The choice is printed with its reasons, written to ``model.json`` and config.yaml, and never
made again on ``--resume``.  Without ``max_time`` there is no budget to plan, so ``auto``
is refused.
"""

import math
import time
from collections.abc import Callable

from charrnn.nn.cells import embedding_size as cell_embedding_size
from charrnn.nn.cells import get

# (layers, units), smallest first; embedding 64 up to 256 units, then 128 (a parallel
# cell's is its rnn_size).
LADDER = [(1, 128), (2, 128), (2, 192), (2, 256), (2, 384), (2, 512), (3, 512), (3, 768)]
REFERENCE = (2, 256)
TOKENS_PER_PARAM = 30.0
PARALLEL_BELOW_EPOCHS, PARALLEL_FROM_VOCAB = 8.0, 256  # rule 4
DROPOUT_FROM, DROPOUT_PER_DOUBLING, DROPOUT_MAX = 2.0, 0.1, 0.5
# The softmax's cost per symbol of the vocabulary, in multiply-adds taking the same time:
# fitted to training on 197 MB of Python with its 8,779 symbols and with the 250 that
# --min-count 100 leaves (benchmarks/RESULTS.md, "Rare symbols"; chars per CPU-second, means
# of 2 rounds): 17.3x faster at 1x64 and 4.8x at 2x256 measured, 16.4x and 5.1x predicted.
# It is 4.8x the output layer's multiply-adds at 1x64 (3 x 64 a symbol): the logits, 6,400 x
# 8,779 floats a step, are written and read several times, so the softmax is memory-bound.
SOFTMAX_MACS = 925
# Measured by `python benchmarks/bench_quality.py calibrate` (tiny-shakespeare, vocabulary 65,
# batch 64 x 100): training multiply-adds per symbol -> symbols/s, and the probe's rate then.
CALIBRATION = {
    "machine": "2-vCPU AMD EPYC (AVX2, no AVX-512), 2026-11-26",
    "vocab": 65,
    "probe": 1.336e10,
    "table": [
        (0.32e6, 61014),
        (0.71e6, 36195),
        (2.61e6, 10659),
        (5.97e6, 6720),
        (10.32e6, 3537),
        (16.61e6, 2057),
    ],
}


def embedding_size(units: int, cell: str = "lstm") -> int:
    return cell_embedding_size(cell, units, 64 if units <= 256 else 128)


def _matrix_weights(layers, units, cell):
    """The layers' matrix weights, each multiplied once per symbol: input and recurrent
    kernels; a parallel cell's block: its input projection and feed-forward (F = 4H)."""
    return get(cell).matrix_weights(layers, units, embedding_size(units, cell))


def macs_per_symbol(layers: int, units: int, vocab: int, cell: str = "lstm") -> int:
    """Multiply-adds one symbol costs in training (forward + backward = 3x forward)."""
    return 3 * (_matrix_weights(layers, units, cell) + units * vocab)


def cost_per_symbol(layers: int, units: int, vocab: int, cell: str = "lstm") -> int:
    """What one symbol costs in training, in multiply-adds: the matrices' (``macs_per_symbol``,
    the output layer's ``units x vocab`` among them) and the softmax's, which is paid per
    symbol of the vocabulary whatever the size (the logits' exponentials and normalisation
    forward, the probabilities less the target backward, the logits written and read)."""
    return macs_per_symbol(layers, units, vocab, cell) + SOFTMAX_MACS * vocab


def params(layers: int, units: int, vocab: int, cell: str = "lstm") -> int:
    """Weights of the model: embedding, layers, output layer.  Besides the matrices a layer
    has its biases (Keras' GRU: an input and a recurrent one); a parallel cell's block the
    projection's, the feed-forward's two and two norm scales, and the model a final norm."""
    others = get(cell).other_params(layers, units)
    return (
        vocab * embedding_size(units, cell)
        + _matrix_weights(layers, units, cell)
        + others
        + units * vocab
        + vocab
    )


def probe(seconds: float = 0.3) -> float:
    """Multiply-adds per second of LSTM-step-sized matmuls in NumPy, on this machine now.

    The matmuls are small enough (4x512 by 512x128) for the BLAS to run each on one thread:
    a multi-threaded probe read 10-20x slow whenever another process used the other core
    (its threads wait for each other), and then chose the smallest model."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 4, 512), dtype=np.float32)
    b = rng.standard_normal((512, 128), dtype=np.float32)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 10:
        a @ b
        n += 1
    return n * a.size * b.shape[1] / elapsed


def symbols_per_second(layers: int, units: int, vocab: int, cell: str, speed: float) -> float:
    """Predicted training throughput, interpolated in log-log between the calibration
    points (extrapolated along the end segments); ``speed``: this machine over that one."""
    x = math.log(cost_per_symbol(layers, units, vocab, cell))
    softmax = SOFTMAX_MACS * CALIBRATION["vocab"]  # the table's runs had their softmax too
    table = [(math.log(m + softmax), math.log(s)) for m, s in CALIBRATION["table"]]
    i = min(max(1, sum(m < x for m, _ in table)), len(table) - 1)
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return speed * math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def machine_speed(vocab: int, throughput: float | None = None) -> tuple[float, str]:
    """(this machine's speed over the calibration machine's, how it was found)."""
    if throughput:  # symbols/s of the reference size: the speed it implies
        ref = symbols_per_second(*REFERENCE, vocab, "lstm", 1.0)  # what the setting measures
        return throughput / ref, f"given throughput {throughput:,.0f} symbols/s at 2x256"
    speed = probe() / CALIBRATION["probe"]
    ref = symbols_per_second(*REFERENCE, vocab, "lstm", speed)
    return speed, f"measured: about {ref:,.0f} symbols/s at 2x256 here"


def choose_cell(
    vocab: int,
    train_symbols: int,
    budget_s: float,
    speed: tuple[float, str],
    log: Callable[[str], None] | None = None,
) -> str:
    """``model.cell: auto`` (rule 4): ``mingru`` or ``lstm``.  ``speed``: machine_speed's."""
    layers, units, seen, _ = _largest(vocab, budget_s, "lstm", speed[0])
    epochs = seen / max(1, train_symbols)
    few, large = epochs < PARALLEL_BELOW_EPOCHS, vocab >= PARALLEL_FROM_VOCAB
    cell = "mingru" if few or large else "lstm"
    if log:
        log(
            f"model auto: {cell}: {vocab} symbols ({'' if large else 'under '}"
            f"{PARALLEL_FROM_VOCAB}); a {layers}x{units} LSTM would read the train split "
            f"{epochs:.1f} times in {budget_s / 60:g} min ({'under' if few else 'at least'} "
            f"{PARALLEL_BELOW_EPOCHS:g})"
        )
    return cell


def _largest(vocab, budget_s, cell, speed):
    """(layers, units, symbols seen, parameters) of the size rule 2 picks."""
    best = None
    for layers, units in LADDER:
        seen = budget_s * symbols_per_second(layers, units, vocab, cell, speed)
        n = params(layers, units, vocab, cell)
        if best is None or seen / n >= TOKENS_PER_PARAM:
            best = (layers, units, seen, n)
    return best


def choose(
    vocab: int,
    train_symbols: int,
    budget_s: float,
    cell: str = "lstm",
    throughput: float | None = None,
    log: Callable[[str], None] | None = None,
    speed: tuple[float, str] | None = None,
) -> tuple[dict, str]:
    """The model settings for a ``budget_s`` run on ``train_symbols`` of data:
    {"num_layers", "rnn_size", "embedding_size", "dropout"} and a one-line reason.
    ``speed``: ``machine_speed``'s (speed, how), found here if None."""
    speed, how = speed or machine_speed(vocab, throughput)
    layers, units, seen, n = _largest(vocab, budget_s, cell, speed)
    epochs = seen / max(1, train_symbols)
    exposure = epochs * n / max(1, train_symbols)
    dropout = 0.0
    if exposure > DROPOUT_FROM:
        dropout = min(DROPOUT_MAX, DROPOUT_PER_DOUBLING * math.log2(exposure / DROPOUT_FROM))
    dropout = round(dropout, 2)
    embedding = embedding_size(units, cell)
    chosen = {
        "num_layers": layers,
        "rnn_size": units,
        "embedding_size": embedding,
        "dropout": dropout,
    }
    why = (
        f"the largest size with at least {TOKENS_PER_PARAM:g}"
        if seen / n >= TOKENS_PER_PARAM
        else f"the smallest size; none reaches {TOKENS_PER_PARAM:g}"
    )
    reason = (
        f"model auto: {layers}x{units} {cell}, embedding {embedding}, dropout "
        f"{dropout:g} ({n:,} parameters): {budget_s / 60:g} min at about "
        f"{seen / budget_s:,.0f} symbols/s reads {seen / 1e6:,.1f}M symbols, "
        f"{seen / n:.0f} per parameter ({why}), {epochs:.1f} epochs of {train_symbols:,}, "
        f"exposure {exposure:.1f} ({how})"
    )
    if log:
        log(reason)
    return chosen, reason
