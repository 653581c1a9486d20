"""Score held-out text with a trained model: per file, per line, and in total.

The text goes through prepare's pipeline (encoding detection, the run's newline
policy, jamo) and is scored under the one definition in :mod:`charrnn.analysis.scoring`
(state carried, pieces with warm-up, the first character context only, a
charge for characters outside the vocabulary).
"""

import numpy as np

from charrnn.analysis import scoring
from charrnn.analysis.dynamic import dynamic_scorer
from charrnn.text import read_text, to_cps

_SUMMED = ("chars", "scored_chars", "in_vocab_chars", "symbols", "predictions", "nats",
           "in_vocab_nats", "oov_chars")


def evaluate(run, files, encoding=None, errors="strict", streams=None, on_warning=None,
             on_file=None, dynamic=None) -> dict:
    """Score each of ``files`` (paths, ``-`` for stdin) with ``run`` (a
    charrnn.store.loaded.LoadedModel).

    Returns {"run", "checkpoint", "step", "jamo", "unk", "scoring", "files": [per file],
    "total"}; each file has path, encoding, oov_distinct and the figures of
    :func:`charrnn.analysis.scoring.figures`.  ``streams``: pieces per file (1: one pass).
    ``on_file(path, scored)`` is called with each file's :class:`charrnn.analysis.scoring.Scored`.
    ``dynamic``: {"segment", "lr"} for dynamic evaluation (charrnn.analysis.dynamic: one
    stream, the weights adapting as the text is scored; they reset for each file).
    """
    vocab = run.vocab
    step = scoring.make_step(run.model)
    nats_of = dynamic_scorer(run.model, **dynamic) if dynamic else None
    results = []
    sums = dict.fromkeys(_SUMMED, 0)
    for path in files:
        text, info = read_text(path, encoding=encoding, errors=errors, newlines=run.newlines,
                               on_warning=on_warning)
        name = "standard input" if path == "-" else path
        scored = scoring.score_text(run.model, vocab, text, streams, step, name=name,
                                    nats_of=nats_of)
        fig = scored.figures()
        results.append({"path": path, "encoding": info.get("encoding"),
                        "oov_distinct": oov_distinct(scored), **fig})
        for k in _SUMMED:
            sums[k] += fig[k]
        if on_file:
            on_file(path, scored)
    return {"run": run.path, "checkpoint": run.checkpoint, "step": run.step,
            "jamo": vocab.jamo, "unk": vocab.unk_id is not None,
            "scoring": {"pieces": 1 if dynamic else streams or "auto", "warmup": scoring.WARMUP,
                        **({"dynamic": dynamic} if dynamic else {}), **scoring.escape_info(vocab)},
            "files": results, "total": scoring.figures(**sums)}


def oov_distinct(scored) -> str:
    """The distinct characters outside the vocabulary, in order of appearance."""
    bad = to_cps(scored.text)[scored.oov]
    uniq, first = np.unique(bad, return_index=True)
    return "".join(chr(int(c)) for c in uniq[np.argsort(first)])


def per_line(path, scored):
    """One dict per line of ``scored.text`` (the newline belongs to the line it ends):
    path, line (from 1), text (without its newline), chars, bits (OOV charge included),
    bits_per_char (per scored character; None if the line is all context), oov_chars,
    and the most surprising character: worst_char, worst_column (from 1), worst_prob,
    worst_bits."""
    text, bits = scored.text, scored.char_bits
    for number, (start, end, scored_n, line_bits) in enumerate(scored.line_bits(), 1):
        line = {"path": path, "line": number, "text": text[start:end].removesuffix("\n"),
                "chars": end - start, "bits": line_bits,
                "bits_per_char": line_bits / scored_n if scored_n else None,
                "oov_chars": int(scored.oov[start:end].sum()),
                "worst_char": None, "worst_column": None, "worst_prob": None, "worst_bits": None}
        if scored_n:
            j = int(np.nanargmax(bits[start:end]))
            worst = float(bits[start + j])
            line.update(worst_char=text[start + j], worst_column=j + 1,
                        worst_prob=float(2.0 ** -worst), worst_bits=worst)
        yield line
