"""`charrnn prepare` and `charrnn dump`: text in, a dataset out, and back."""

import logging
import sys

import click

from charrnn import api
from charrnn.cli.group import cli


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
    if quiet:  # the summary lines are INFO records; warnings still show
        logging.getLogger("charrnn").setLevel(logging.WARNING)
    ds = api.prepare(
        inputs,
        out,
        include=include,
        encoding=encoding,
        errors=errors,
        keep_newlines=keep_newlines,
        jamo=jamo,
        min_count=min_count,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        force=force,
        progress=not quiet and sys.stderr.isatty(),
        vocab_from=vocab_from,
    )
    if as_json:
        import json

        click.echo(json.dumps(ds.summary, ensure_ascii=False))


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
