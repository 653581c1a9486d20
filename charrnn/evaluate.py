"""Score held-out text with a trained model: loss per symbol and per original character.

The text goes through prepare's pipeline (encoding detection, the run's newline
policy, jamo), then the model reads it as ``streams`` contiguous pieces side by
side, in windows of ``window`` symbols with the state carried across windows --
like training's validation.  Every symbol but the first is predicted from all
symbols before it in its piece; a piece starts from the zero state, so
``streams=1`` scores the text as one sequence (exact but slowest).

Bits per original character = bits per symbol x symbols / characters, so a jamo
model (about 2.3 symbols per Hangul syllable) compares fairly with a syllable model.
"""

import math

import numpy as np

from charrnn.errors import CharrnnError

WINDOW = 256            # symbols per call
MIN_STREAM = 1024       # symbols per stream when choosing the number of streams
MAX_STREAMS = 64


def _figures(nats, targets, symbols, chars):
    loss = nats / targets if targets else float("nan")
    bits = loss / math.log(2)
    return {"loss_nats": loss, "bits_per_symbol": bits,
            "bits_per_char": bits * symbols / chars if chars else float("nan")}


def score_ids(model, ids, streams=None, window=WINDOW, step=None):
    """Total negative log-likelihood (nats) of ids[1:] given the preceding ids, and
    the number of predictions: (nats, count).  ``step``: from :func:`make_step`, to
    reuse its compilation across calls."""
    ids = np.asarray(ids, np.int32)
    m = len(ids) - 1  # predictions
    if m < 1:
        return 0.0, 0
    b = streams or max(1, min(MAX_STREAMS, m // MIN_STREAM))
    b = min(b, m)
    per = -(-m // b)                       # predictions per stream (ceil)
    cols = -(-per // window) * window      # padded to whole windows: one traced shape
    x = np.zeros((b, cols), np.int32)
    y = np.zeros((b, cols), np.int32)
    mask = np.zeros((b, cols), np.float32)
    for s in range(b):
        lo, hi = s * per, min(m, (s + 1) * per)
        if hi <= lo:
            continue
        x[s, :hi - lo], y[s, :hi - lo] = ids[lo:hi], ids[lo + 1:hi + 1]
        mask[s, :hi - lo] = 1.0

    step = step or make_step(model)
    states = model.initial_state(b)
    total = 0.0
    for c in range(0, cols, window):
        nats, states = step(x[:, c:c + window], y[:, c:c + window], mask[:, c:c + window], states)
        total += float(nats)
    return total, m


def make_step(model):
    """(x, y, mask, states) -> (summed masked NLL, new states), compiled."""
    from charrnn.backend import tensorflow

    tf = tensorflow()

    # XLA on a CPU (cuDNN is not XLA-able): since the fused CPU layers it is about even
    # (0.9x at 2x128, 1.05x at 3x512 for `charrnn evaluate`, measured in session 2).
    @tf.function(jit_compile=not tf.config.list_physical_devices("GPU"))
    def step(x, y, mask, states):
        logits, states = model(x, states=states, return_state=True, training=False)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return tf.reduce_sum(tf.cast(nll, tf.float64) * tf.cast(mask, tf.float64)), states

    return step


def evaluate(run, files, encoding=None, errors="strict", streams=None, on_warning=None) -> dict:
    """Score each of ``files`` (paths, ``-`` for stdin) with ``run`` (a charrnn.runs.Run).

    Returns {"run", "checkpoint", "step", "jamo", "files": [per file], "total"}; each
    entry has chars (after the newline policy), oov_chars (occurrences of characters
    outside the vocabulary: mapped to the unknown symbol when the vocabulary has one,
    else left out), oov_distinct, scored_chars, symbols, predictions (symbols - 1),
    loss_nats (per prediction), bits_per_symbol, bits_per_char (per scored char).
    """
    from charrnn import runs
    from charrnn.text import read_text

    vocab = run.vocab
    meta = run.meta if run.meta is not None else runs.read_dataset_meta(run.path)
    newlines = meta.get("newlines", "lf")
    step = make_step(run.model)
    results = []
    sums = dict.fromkeys(("chars", "oov_chars", "scored_chars", "symbols", "predictions"), 0)
    sums["nats"] = 0.0
    for path in files:
        text, info = read_text(path, encoding=encoding, errors=errors, newlines=newlines,
                               on_warning=on_warning)
        chars = len(text)
        bad = vocab.unknown_chars(text)
        oov = sum(text.count(c) for c in bad)
        if bad and vocab.unk_id is None:
            text = text.translate({ord(c): None for c in bad})  # nothing to map them to
        ids = vocab.encode(text, unknown="unk" if vocab.unk_id is not None else "skip")
        if len(ids) < 2:
            raise CharrnnError(f"{path} has {len(ids)} symbol(s) the model can score; evaluate "
                               "needs at least 2 (the first one is only context)")
        nats, count = score_ids(run.model, ids, streams, step=step)
        entry = {"path": path, "encoding": info.get("encoding"), "chars": chars,
                 "oov_chars": oov, "oov_distinct": "".join(bad),
                 "scored_chars": len(text), "symbols": int(len(ids)), "predictions": count,
                 **_figures(nats, count, len(ids), len(text))}
        results.append(entry)
        for k in ("chars", "oov_chars", "scored_chars", "symbols", "predictions"):
            sums[k] += entry[k]
        sums["nats"] += nats
    nats = sums.pop("nats")
    total = dict(sums, **_figures(nats, sums["predictions"], sums["symbols"], sums["scored_chars"]))
    return {"run": run.path, "checkpoint": run.checkpoint, "step": run.step,
            "jamo": vocab.jamo, "unk": vocab.unk_id is not None, "files": results, "total": total}
