"""``charrnn.prepare``: text files in, a dataset directory out, as ``charrnn prepare``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from charrnn.api.messages import info, options, warn

if TYPE_CHECKING:
    from charrnn.atomic import StrPath
    from charrnn.store.dataset import Dataset


@options
def prepare(
    inputs: StrPath | Sequence[StrPath],
    out: StrPath | None = None,
    *,
    include: Sequence[str] = (),
    encoding: str | None = None,
    errors: str = "strict",
    keep_newlines: bool = False,
    jamo: str = "auto",
    min_count: int = 1,
    val_fraction: float = 0.05,
    test_fraction: float = 0.0,
    force: bool = False,
    vocab_from: StrPath | None = None,
    progress: bool = False,
) -> Dataset:
    """Turn text files (or folders, with ``include`` globs) into a dataset directory, as
    ``charrnn prepare`` does with the same options; returns the
    :class:`charrnn.data.Dataset` (its ``summary`` holds what ``--json`` prints).

    ``out`` defaults to ``data/<the first input's name without its extension>``.  The summary
    lines ``charrnn prepare`` prints are logged at INFO.
    """
    from charrnn.store.dataset import load_dataset
    from charrnn.store.prepare import prepare as prepare_dataset

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    summary = prepare_dataset(
        [os.fspath(i) for i in inputs],
        out,
        include=include,
        encoding=encoding,
        errors=errors,
        newlines="keep" if keep_newlines else "lf",
        jamo=jamo,
        min_count=min_count,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        force=force,
        progress=progress,
        on_warning=warn,
        vocab_from=vocab_from,
    )
    for line in summary_lines(summary):
        info(line)
    ds = load_dataset(summary["out"])
    ds.summary = summary
    return ds


def summary_lines(s: dict) -> list[str]:
    """What ``charrnn prepare`` says of a dataset it wrote (its summary dict)."""
    lines = []
    for i in s["inputs"]:
        conf = (
            "given by --encoding"
            if i["confidence"] is None
            else f"confidence {i['confidence']:.2f}"
        )
        name = "standard input" if i["path"] == "-" else i["path"]
        lines.append(f"Read {name}: {human_size(i['bytes'])}, {i['encoding']} ({conf})")
    jamo = "on" if s["jamo"]["applied"] else "off"
    unk = f", {s['unk_replaced']:,} rare symbols -> unknown" if s["unk_replaced"] else ""
    base = s.get("vocab_from")
    base = f" ({base['symbols']} from {base['path']}, {base['added']} new)" if base else ""
    lines.append(
        f"{s['chars']:,} characters -> {s['symbols']:,} symbols (jamo {jamo}, "
        f"newlines {s['newlines']}); vocabulary {s['vocab_size']} symbols{base}{unk}"
    )
    if s["jamo"].get("why"):
        lines.append(f"jamo {jamo} (auto): {s['jamo']['why']}")
    if s.get("rare_symbols", {}).get("note"):
        lines += _rare_note(s["rare_symbols"], s["vocab_size"])
    sp = s["splits"]
    lines.append(
        "Split (contiguous): " + ", ".join(f"{k} {sp[k]['symbols']:,}" for k in sp) + " symbols"
    )
    lines.append(f"Wrote {s['out']} ({s['dtype']})")
    return lines


def _percent(share: float) -> str:
    """Two significant digits, never an exponent: 0.024%, 0.0087%, 12%."""
    import math

    p = 100 * share
    if p <= 0:
        return "0%"
    return f"{p:.{max(0, 1 - math.floor(math.log10(p)))}f}%"


def _rare_note(r: dict, vocab_size: int) -> list[str]:
    offers = [o for o in r["options"] if o["offered"]]
    return [
        f"Rare symbols: {r['symbols']:,} of the {vocab_size:,} symbols are seen fewer than "
        f"{r['below']} times ({_percent(r['share'])} of the text), but each costs the output "
        "layer as much as a common one: training time grows with the vocabulary",
        "  "
        + ", ".join(
            f"--min-count {o['min_count']} would give {o['vocab_size']:,} symbols "
            f"({_percent(o['unk_share'])} of the text -> U+FFFD)"
            for o in offers
        ),
    ]


def human_size(n: float) -> str:
    """Bytes for people: 512 B, 1.5 KB, 22.1 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
