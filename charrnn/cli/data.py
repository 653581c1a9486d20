"""`charrnn prepare` and `charrnn dump`: text in, a dataset out, and back."""

import math
import sys

import click

from charrnn.cli.group import cli, human_size, info, warn


def _prepare_summary(s: dict) -> None:
    for i in s["inputs"]:
        conf = (
            "given by --encoding"
            if i["confidence"] is None
            else f"confidence {i['confidence']:.2f}"
        )
        name = "standard input" if i["path"] == "-" else i["path"]
        info(f"Read {name}: {human_size(i['bytes'])}, {i['encoding']} ({conf})")
    jamo = "on" if s["jamo"]["applied"] else "off"
    unk = f", {s['unk_replaced']:,} rare symbols -> unknown" if s["unk_replaced"] else ""
    base = s.get("vocab_from")
    base = f" ({base['symbols']} from {base['path']}, {base['added']} new)" if base else ""
    info(
        f"{s['chars']:,} characters -> {s['symbols']:,} symbols (jamo {jamo}, "
        f"newlines {s['newlines']}); vocabulary {s['vocab_size']} symbols{base}{unk}"
    )
    if s["jamo"].get("why"):
        info(f"jamo {jamo} (auto): {s['jamo']['why']}")
    if s.get("rare_symbols", {}).get("note"):
        _rare_note(s["rare_symbols"], s["vocab_size"])
    sp = s["splits"]
    info("Split (contiguous): " + ", ".join(f"{k} {sp[k]['symbols']:,}" for k in sp) + " symbols")
    info(f"Wrote {s['out']} ({s['dtype']})")


def _percent(share: float) -> str:
    """Two significant digits, never an exponent: 0.024%, 0.0087%, 12%."""
    p = 100 * share
    if p <= 0:
        return "0%"
    return f"{p:.{max(0, 1 - math.floor(math.log10(p)))}f}%"


def _rare_note(r: dict, vocab_size: int) -> None:
    info(
        f"Rare symbols: {r['symbols']:,} of the {vocab_size:,} symbols are seen fewer than "
        f"{r['below']} times ({_percent(r['share'])} of the text), but each costs the output "
        "layer as much as a common one: training time grows with the vocabulary"
    )
    offers = [o for o in r["options"] if o["offered"]]
    info(
        "  "
        + ", ".join(
            f"--min-count {o['min_count']} would give {o['vocab_size']:,} symbols "
            f"({_percent(o['unk_share'])} of the text -> U+FFFD)"
            for o in offers
        )
    )


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-o",
    "--out",
    type=click.Path(),
    help="Dataset directory to write [default: data/<input name>, data/stdin for -].",
)
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="For directory inputs: only files whose name or relative path matches (repeatable, e.g. "
    "--include '*.c' --include '*.h'); files are taken in sorted order.",
)
@click.option(
    "--encoding",
    help="Decode every input with this codec instead of detecting it (e.g. utf-8, cp949, utf-16).",
)
@click.option(
    "--errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="Undecodable bytes: stop with an error naming the offset, or replace them with U+FFFD.",
)
@click.option(
    "--keep-newlines",
    is_flag=True,
    help="Keep CRLF and lone CR as they are (by default both become LF).",
)
@click.option(
    "--jamo",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Split Hangul syllables into conjoining jamo (lossless; a much smaller vocabulary). "
    "auto: on when syllables are at least 10% of the characters, except for mostly-Hangul "
    "text of few distinct syllables, where whole syllables train better (the summary says "
    "which and why; see docs/data.md).",
)
@click.option(
    "--min-count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Map symbols seen fewer times to one unknown symbol (U+FFFD). The default keeps the text "
    "exactly; when rare symbols are most of a large vocabulary the summary says what 10 or "
    "100 would give (the output layer, and so training, is slower the more symbols there "
    "are).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.05,
    show_default=True,
    help="Share of the characters for validation: the contiguous part after train.",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Share of the characters for test: the contiguous tail.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing dataset directory (only once the new one is complete).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout."
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar and no summary on stderr (warnings still show).",
)
@click.option(
    "--vocab-from",
    type=click.Path(),
    metavar="RUN",
    help="Keep this run's vocabulary with its ids and add the new text's other characters after "
    "them, so `train --init-from RUN` keeps the old alphabet; jamo and newline policy follow "
    "the run.",
)
def prepare(
    inputs: tuple[str, ...],
    out: str | None,
    include: tuple[str, ...],
    encoding: str | None,
    errors: str,
    keep_newlines: bool,
    jamo: str,
    min_count: int,
    val_fraction: float,
    test_fraction: float,
    force: bool,
    as_json: bool,
    quiet: bool,
    vocab_from: str | None,
) -> None:
    """Turn text files, directories or - (stdin) into a dataset for training.

    Each file's encoding is detected (chardet; BOMs honoured) and reported; CRLF
    and lone CR become LF unless --keep-newlines; inputs are concatenated as they
    are. The dataset directory gets vocab.json, meta.json and train/val/test.npy.

    \b
    charrnn prepare data/shakespeare.txt
    cat *.c | charrnn prepare - -o data/linux
    charrnn prepare src/ --include '*.c' --include '*.h' -o data/c
    """
    from charrnn.store.prepare import prepare as prepare_dataset

    summary = prepare_dataset(
        inputs,
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
        progress=not quiet and sys.stderr.isatty(),
        on_warning=warn,
        vocab_from=vocab_from,
    )
    if not quiet:
        _prepare_summary(summary)
    if as_json:
        import json

        click.echo(json.dumps(summary, ensure_ascii=False))


@cli.command()
@click.argument("data_dir", type=click.Path())
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test", "all"]),
    default="all",
    show_default=True,
    help="Which part to write; all = train, val, test in order.",
)
def dump(data_dir: str, split: str) -> None:
    """Write a dataset's stored text to stdout exactly (UTF-8, Hangul recomposed)."""
    from charrnn.store.dataset import iter_dump, load_dataset

    out = sys.stdout.buffer
    for text in iter_dump(load_dataset(data_dir), split):
        out.write(text.encode("utf-8", "surrogatepass"))
    out.flush()
