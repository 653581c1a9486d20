"""Score held-out text with a trained model: per file, per line, and in total.

The text goes through prepare's pipeline (encoding detection, the run's newline
policy, jamo) and is scored under the one definition in :mod:`charrnn.analysis.scoring`
(state carried, pieces with warm-up, the first character context only, a
charge for characters outside the vocabulary).  Files are read and scored
``scoring.CHUNK`` characters at a time, so memory does not grow with their size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from charrnn.analysis import scoring
from charrnn.analysis.dynamic import dynamic_scorer
from charrnn.text import iter_text, normalise_newlines, to_cps

if TYPE_CHECKING:
    from charrnn.atomic import StrPath
    from charrnn.store.loaded import LoadedModel

_SUMMED = (
    "chars",
    "scored_chars",
    "in_vocab_chars",
    "symbols",
    "predictions",
    "nats",
    "in_vocab_nats",
    "oov_chars",
)


class Text(NamedTuple):
    """A text in memory to score as :func:`evaluate` scores a file (the Python API's
    Model.score): ``name`` stands for the path in the results."""

    name: str
    text: str


def evaluate(
    run: LoadedModel,
    files: Sequence[StrPath | Text],
    encoding: str | None = None,
    errors: str = "strict",
    streams: int | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_part: Callable[[StrPath, scoring.Scored], None] | None = None,
    on_line: Callable[[dict], None] | None = None,
    dynamic: dict | None = None,
    chunk: int | None = None,
) -> dict:
    """Score each of ``files`` (paths, ``-`` for stdin, or :class:`Text` objects) with ``run``
    (a charrnn.store.loaded.LoadedModel).

    Returns {"run", "checkpoint", "step", "jamo", "unk", "scoring", "files": [per file],
    "total"}; each file has path, encoding, oov_distinct and the figures of
    :func:`charrnn.analysis.scoring.figures`.  ``streams``: pieces per part of a file (1:
    one pass).  Files are scored ``chunk`` characters at a time (default scoring.CHUNK):
    ``on_part(path, scored)`` is called with each part of each file in order (a
    :class:`charrnn.analysis.scoring.Scored`; a line may go on in the next part), and
    ``on_line(record)`` with each line of :func:`per_line` as soon as it is scored.
    ``dynamic``: {"segment", "lr"} for dynamic evaluation (charrnn.analysis.dynamic: one
    stream, the weights adapting as the text is scored; they reset for each file); it
    reads each file whole.
    """
    vocab = run.vocab
    step = scoring.make_step(run.model)
    nats_of = dynamic_scorer(run.model, **dynamic) if dynamic else None
    results = []
    sums = dict.fromkeys(_SUMMED, 0)
    for path in files:
        info = {}
        if isinstance(path, Text):  # read as prepare reads a file, but for its encoding
            path, texts = path.name, iter([normalise_newlines(path.text, run.newlines)])
        else:
            texts = iter_text(
                path,
                encoding=encoding,
                errors=errors,
                newlines=run.newlines,
                info=info,
                on_warning=on_warning,
            )
        name = "standard input" if path == "-" else path
        mine = dict.fromkeys(_SUMMED, 0)
        oov, lines = {}, Lines(path)
        for part in scoring.score_parts(
            run.model, vocab, texts, streams, step, name, nats_of, chunk or scoring.CHUNK
        ):
            for k, v in part.figures().items():
                if k in mine:
                    mine[k] += v
            oov.update(dict.fromkeys(oov_distinct(part)))
            if on_part:
                on_part(path, part)
            for line in lines.feed(part) if on_line else ():
                on_line(line)
        for line in lines.close() if on_line else ():
            on_line(line)
        results.append(
            {
                "path": path,
                "encoding": info.get("encoding"),
                "oov_distinct": "".join(oov),
                **scoring.figures(**mine),
            }
        )
        for k in _SUMMED:
            sums[k] += mine[k]
    return {
        "run": run.path,
        "checkpoint": run.checkpoint,
        "step": run.step,
        "jamo": vocab.jamo,
        "unk": vocab.unk_id is not None,
        "scoring": {
            "pieces": 1 if dynamic else streams or "auto",
            "warmup": scoring.WARMUP,
            "part_chars": None if dynamic else chunk or scoring.CHUNK,
            **({"dynamic": dynamic} if dynamic else {}),
            **scoring.escape_info(vocab),
        },
        "files": results,
        "total": scoring.figures(**sums),
    }


def oov_distinct(scored: scoring.Scored) -> str:
    """The distinct characters outside the vocabulary, in order of appearance."""
    bad = to_cps(scored.text)[scored.oov]
    uniq, first = np.unique(bad, return_index=True)
    return "".join(chr(int(c)) for c in uniq[np.argsort(first)])


def per_line(path: StrPath, scored: scoring.Scored | Iterable[scoring.Scored]) -> Iterator[dict]:
    """One dict per line of the text (the newline belongs to the line it ends): path, line
    (from 1), text (without its newline), chars, bits (OOV charge included), bits_per_char
    (per scored character; None if the line is all context), oov_chars, and the most
    surprising character: worst_char, worst_column (from 1), worst_prob, worst_bits.

    ``scored``: a :class:`charrnn.analysis.scoring.Scored`, or the parts of one text in
    order (:func:`charrnn.analysis.scoring.score_parts`); a line that goes on from one
    part to the next is one line, held until it ends."""
    lines = Lines(path)
    for part in [scored] if isinstance(scored, scoring.Scored) else scored:
        yield from lines.feed(part)
    yield from lines.close()


class Lines:
    """:func:`per_line` with the parts of a text pushed in: ``feed(part)`` and, after the
    last, ``close()`` yield the lines that ended."""

    def __init__(self, path: StrPath) -> None:
        self.path, self.number, self.line = path, 0, None

    def feed(self, part: scoring.Scored) -> Iterator[dict]:
        text, bits = part.text, part.char_bits
        for start, end, n, line_bits in part.line_bits():
            seg = {
                "text": [text[start:end]],
                "chars": end - start,
                "bits": line_bits,
                "scored": n,
                "oov_chars": int(part.oov[start:end].sum()),
                "worst": None,
            }
            if n:
                j = int(np.nanargmax(bits[start:end]))
                seg["worst"] = (float(bits[start + j]), text[start + j], j)
            self.line = seg if self.line is None else _join(self.line, seg)
            if text[end - 1 : end] == "\n":
                yield from self.close()

    def close(self) -> Iterator[dict]:
        if self.line is not None:
            self.number += 1
            yield _record(self.path, self.number, self.line)
            self.line = None


def _join(line: dict, seg: dict) -> dict:
    worst = line["worst"]
    if seg["worst"] and (worst is None or seg["worst"][0] > worst[0]):  # the first on a tie
        b, ch, j = seg["worst"]
        worst = (b, ch, line["chars"] + j)
    return {
        "text": line["text"] + seg["text"],
        "chars": line["chars"] + seg["chars"],
        "bits": line["bits"] + seg["bits"],
        "scored": line["scored"] + seg["scored"],
        "oov_chars": line["oov_chars"] + seg["oov_chars"],
        "worst": worst,
    }


def _record(path: StrPath, number: int, line: dict) -> dict:
    n, worst = line["scored"], line["worst"]
    return {
        "path": path,
        "line": number,
        "text": "".join(line["text"]).removesuffix("\n"),
        "chars": line["chars"],
        "bits": line["bits"],
        "bits_per_char": line["bits"] / n if n else None,
        "oov_chars": line["oov_chars"],
        "worst_char": worst[1] if worst else None,
        "worst_column": worst[2] + 1 if worst else None,
        "worst_prob": float(2.0 ** -worst[0]) if worst else None,
        "worst_bits": worst[0] if worst else None,
    }
