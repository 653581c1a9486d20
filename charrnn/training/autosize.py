"""`model: auto`: the model size a time budget can train best, chosen before training starts.

The rule (derived from the sweeps in benchmarks/bench_quality.py; benchmarks/RESULTS.md,
"Quality"):

1. Throughput.  How many symbols a second each candidate size trains here is predicted from
   its cost per symbol (``cost_per_symbol``: its multiply-adds, and the softmax over the
   vocabulary counted as ``SOFTMAX_MACS`` multiply-adds a symbol of the vocabulary) by the
   throughputs measured for the run's kind of matmul, float32 or bfloat16
   (``CALIBRATIONS``), scaled by how fast this machine runs a one-thread matmul of that
   dtype in TensorFlow now against the same probe then (charrnn.training.probe: a child
   process, a few seconds).  ``model.auto_throughput`` gives the symbols/s of the reference
   2x256 LSTM instead (no probe; what tests use).  The calibration is of LSTMs; other cells are
   predicted from their multiply-adds alike (for mingru/minlstm, whose matmuls span a
   whole window, this is not measured).
2. Size.  Each candidate of ``LADDER`` would see ``budget x throughput`` symbols, or
   fewer where max_epochs / max_steps end the run first.  Take the
   largest whose budget gives it at least ``TOKENS_PER_PARAM`` symbols per weight: below
   that a smaller network that sees more text wins in the same time.  Measured
   (benchmarks/RESULTS.md, Quality): at 3 minutes the winners read 77-85 symbols per weight
   and the losers 18 or fewer (tiny-shakespeare and C); at 10 minutes on a 6x faster
   machine a 2x256 LSTM that read 43 per weight beat a 2x128; at 30 minutes a 2x384 that
   read 24 (dropout 0.5) beat a 2x256 that read 51, by 0.018 nats on nanoGPT's split, and
   at 3 minutes a 2x192 that read 29 tied a 2x128 that read 88 (benchmarks/RESULTS.md,
   "model: auto's probe").  Hence 20, between the losers' 18 and the winners' 24.
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
from collections.abc import Callable
from typing import NamedTuple

from charrnn.nn.cells import embedding_size as cell_embedding_size
from charrnn.nn.cells import get
from charrnn.training import probe

# (layers, units), smallest first; embedding 64 up to 256 units, then 128 (a parallel
# cell's is its rnn_size).
LADDER = [(1, 128), (2, 128), (2, 192), (2, 256), (2, 384), (2, 512), (3, 512), (3, 768)]
REFERENCE = (2, 256)
TOKENS_PER_PARAM = 20.0
PARALLEL_BELOW_EPOCHS, PARALLEL_FROM_VOCAB = 8.0, 256  # rule 4
DROPOUT_FROM, DROPOUT_PER_DOUBLING, DROPOUT_MAX = 2.0, 0.1, 0.5
# The softmax's cost per symbol of the vocabulary, in multiply-adds taking the same time:
# fitted to training on 197 MB of Python with its 8,779 symbols and with the 250 that
# --min-count 100 leaves (benchmarks/RESULTS.md, "Rare symbols"; chars per CPU-second, means
# of 2 rounds): 17.3x faster at 1x64 and 4.8x at 2x256 measured, 17.7x and 4.5x predicted
# by the float32 calibration.  (Those runs were bfloat16, yet the bfloat16 calibration's flat
# small end fits no constant: 9.3x at 1x64 with this one; the single cost axis cannot tell
# matmuls that bfloat16 speeds up from a softmax it does not.)  It is 3.5x the output
# layer's multiply-adds at 1x64 (3 x 64 a symbol): the logits, 6,400 x 8,779 floats a step,
# are written and read several times, so the softmax is memory-bound.
SOFTMAX_MACS = 675
# Measured by `python benchmarks/bench_quality.py calibrate` (tiny-shakespeare, vocabulary
# CALIBRATION_VOCAB, batch 64 x 100, precision auto), once for each kind of matmul a run does:
# training multiply-adds per symbol -> symbols/s, and charrnn.training.probe's rate then.  Their
# shapes differ (bfloat16 gains 1.5x at 1x128, 2.3-3.2x from 2x256 on: small steps are bound by
# per-op costs that bfloat16 does not cut), so one table scaled by the probe would be 2-3x off
# on the other kind (benchmarks/RESULTS.md, "model: auto's probe").
CALIBRATION_VOCAB = 65
CALIBRATIONS = {
    "float32": {  # as TensorFlow runs on an AVX2-only CPU: Eigen matmuls, oneDNN ops off
        "machine": "2-vCPU AMD EPYC emulating AVX2 (TF_ENABLE_ONEDNN_OPTS=0 "
        "ONEDNN_MAX_CPU_ISA=AVX2), 2026-12-07",
        "probe": 3.154e10,
        "table": [
            (0.32e6, 131505),
            (0.71e6, 71747),
            (2.61e6, 20346),
            (5.97e6, 11485),
            (10.32e6, 5758),
            (16.61e6, 3941),
        ],
    },
    "bfloat16": {  # oneDNN's AVX512_BF16 matmuls
        "machine": "2-vCPU AMD EPYC (AVX-512, AVX512_BF16), 2026-12-07",
        "probe": 1.651e11,
        "table": [
            (0.32e6, 191533),
            (0.71e6, 125693),
            (2.61e6, 57112),
            (5.97e6, 26450),
            (10.32e6, 18357),
            (16.61e6, 9126),
        ],
    },
}


class Speed(NamedTuple):
    """How fast this machine trains: ``factor`` x the ``table`` calibration's throughputs;
    ``how``: how that was found, for the reason line."""

    factor: float
    how: str
    table: str = "float32"


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


def symbols_per_second(layers: int, units: int, vocab: int, cell: str, speed: Speed) -> float:
    """Predicted training throughput, interpolated in log-log between the points of the
    speed's calibration (extrapolated along the end segments), times its factor."""
    x = math.log(cost_per_symbol(layers, units, vocab, cell))
    softmax = SOFTMAX_MACS * CALIBRATION_VOCAB  # the table's runs had their softmax too
    table = [(math.log(m + softmax), math.log(s)) for m, s in CALIBRATIONS[speed.table]["table"]]
    i = min(max(1, sum(m < x for m, _ in table)), len(table) - 1)
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return speed.factor * math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def calibration_for(precision: str) -> str:
    """The key of ``CALIBRATIONS`` a run in ``precision`` is predicted from: its kind of
    matmul, bfloat16 where the precision resolves to mixed_bfloat16, else float32."""
    from charrnn.training.distribute import resolve_precision

    return "bfloat16" if resolve_precision(precision) == "mixed_bfloat16" else "float32"


def machine_speed(vocab: int, throughput: float | None = None, precision: str = "auto") -> Speed:
    """How fast a run in ``precision`` trains here, against ``calibration_for`` it: by
    charrnn.training.probe in that dtype unless ``throughput`` gives it."""
    table = calibration_for(precision)
    if throughput:  # symbols/s of the reference size: the factor it implies
        ref = symbols_per_second(*REFERENCE, vocab, "lstm", Speed(1.0, "", table))
        how = f"given throughput {throughput:,.0f} symbols/s at 2x256"
        return Speed(throughput / ref, how, table)
    factor = probe.run(table) / CALIBRATIONS[table]["probe"]
    ref = symbols_per_second(*REFERENCE, vocab, "lstm", Speed(factor, "", table))
    return Speed(factor, f"measured: about {ref:,.0f} {table} symbols/s at 2x256 here", table)


def choose_cell(
    vocab: int,
    train_symbols: int,
    budget_s: float,
    speed: Speed,
    log: Callable[[str], None] | None = None,
    most: float = math.inf,
) -> str:
    """``model.cell: auto`` (rule 4): ``mingru`` or ``lstm``.  ``speed``: machine_speed's;
    ``most``: the symbols max_epochs / max_steps let the run read."""
    layers, units, _, seen, _ = _largest(vocab, budget_s, "lstm", speed, most)
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


def _largest(vocab, budget_s, cell, speed, most):
    """(layers, units, symbols/s, symbols seen, parameters) of the size rule 2 picks:
    the run reads for ``budget_s`` or until max_epochs / max_steps let it read no more
    (``most`` symbols), whichever comes first."""
    best = None
    for layers, units in LADDER:
        rate = symbols_per_second(layers, units, vocab, cell, speed)
        seen = min(most, budget_s * rate)
        n = params(layers, units, vocab, cell)
        if best is None or seen / n >= TOKENS_PER_PARAM:
            best = (layers, units, rate, seen, n)
    return best


def choose(
    vocab: int,
    train_symbols: int,
    budget_s: float,
    cell: str = "lstm",
    throughput: float | None = None,
    log: Callable[[str], None] | None = None,
    speed: Speed | None = None,
    most: float = math.inf,
) -> tuple[dict, str]:
    """The model settings for a ``budget_s`` run on ``train_symbols`` of data:
    {"num_layers", "rnn_size", "embedding_size", "dropout"} and a one-line reason.
    ``speed``: ``machine_speed``'s, found here if None; ``most``: the symbols
    max_epochs / max_steps let the run read."""
    speed = speed or machine_speed(vocab, throughput)
    layers, units, rate, seen, n = _largest(vocab, budget_s, cell, speed, most)
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
        f"{rate:,.0f} symbols/s reads {seen / 1e6:,.1f}M symbols"
        f"{' (max_epochs / max_steps end it first)' if seen < budget_s * rate else ''}, "
        f"{seen / n:.0f} per parameter ({why}), {epochs:.1f} epochs of {train_symbols:,}, "
        f"exposure {exposure:.1f} ({speed.how})"
    )
    if log:
        log(reason)
    return chosen, reason
