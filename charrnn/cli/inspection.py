"""`charrnn evaluate`, `charrnn export` and `charrnn visualize`: looking at a model and
taking it elsewhere."""

from __future__ import annotations

import click

from charrnn import api, backend
from charrnn.cli.group import cli, info, warn


def _evaluate_report(r: dict) -> None:
    for f in r["files"] + ([dict(r["total"], path="total")] if len(r["files"]) > 1 else []):
        oov = (
            f" ({f['oov_chars']:,} outside the vocabulary, charged {f['oov_bits']:,.1f} bits)"
            if f["oov_chars"]
            else ""
        )
        line = (
            f"{f['path']}: {f['chars']:,} chars{oov}, {f['symbols']:,} symbols: "
            f"loss {_num(f['loss_nats'])} nats/symbol, {_num(f['bits_per_symbol'])} "
            f"bits/symbol, {_num(f['bits_per_char'])} bits/char"
        )
        if f["oov_chars"]:
            line += f" ({_num(f['bits_per_char_in_vocab'])} without the outside characters)"
        info(line)


def _num(x):
    return "n/a" if x is None else f"{x:.4f}"


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--checkpoint",
    default="best",
    show_default=True,
    help="Which weights: best (by validation loss), latest, or a checkpoint path.",
)
@click.option("--encoding", help="Decode the files with this codec instead of detecting it.")
@click.option(
    "--errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="Undecodable bytes: stop with an error, or replace them with U+FFFD.",
)
@click.option(
    "--streams",
    type=click.IntRange(min=1),
    help="Score each file as this many pieces side by side (faster; each piece after the first "
    "reads the 256 symbols before it as unscored warm-up; a file past 1,048,576 characters "
    "is scored that many at a time, each part in its own pieces); 1 scores it in one pass "
    "[default: one per 1024 symbols, at most 64].",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the figures as one JSON object on stdout."
)
@click.option(
    "--per-line",
    is_flag=True,
    help="Print one JSON object per input line on stdout (path, line, text, chars, bits, "
    "bits_per_char, the most surprising character), as the file is scored; the figures go to "
    "stderr. Costs: a record built and written in Python per line (time), and a line is held "
    "until it ends (the longest line must fit in memory).",
)
@click.option(
    "--dynamic",
    is_flag=True,
    help="Dynamic evaluation: read each file in one stream and let the weights adapt (an SGD step "
    "on each segment after scoring it, so no character is predicted by weights that saw it); "
    "they reset for each file. Each file is held in memory whole (not read in parts).",
)
@click.option(
    "--dynamic-lr",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="With --dynamic: the SGD learning rate per segment (charrnn.analysis.dynamic.LR).",
)
@click.option(
    "--dynamic-segment",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="With --dynamic: symbols scored per weight update (charrnn.analysis.dynamic.SEGMENT).",
)
def evaluate(
    run_dir: str,
    files: tuple[str, ...],
    checkpoint: str,
    encoding: str | None,
    errors: str,
    streams: int | None,
    as_json: bool,
    per_line: bool,
    dynamic: bool,
    dynamic_lr: float,
    dynamic_segment: int,
) -> None:
    """Score text files (- for stdin) with a trained run: loss per symbol and per character.

    The text goes through prepare's pipeline (encoding detection, the run's
    newline policy, jamo). Reports nats/symbol, bits/symbol and bits per original
    character (fair between jamo and syllable models); characters outside the
    vocabulary are charged -log2 P(escape) + log2 |class| bits (docs/sampling.md:
    How a text is scored) and the figures are also given without them. Files of any size:
    they are read and scored 1,048,576 characters at a time, in memory that does
    not grow with them.

    \b
    charrnn evaluate runs/shakespeare held_out.txt
    charrnn evaluate runs/ko-jamo test.txt --json | jq .total.bits_per_char
    charrnn evaluate runs/logs app.log --per-line | jq -s 'sort_by(.bits_per_char) | reverse | .[:10]'
    """  # noqa: E501
    import json

    from charrnn.analysis.evaluate import evaluate as score

    if as_json and per_line:
        raise click.UsageError("give --json or --per-line, not both")
    if dynamic and streams not in (None, 1):
        raise click.UsageError("--dynamic reads each file in one stream; leave out --streams")
    run = api.load(run_dir, checkpoint).loaded

    def on_line(line: dict) -> None:
        click.echo(json.dumps(line, ensure_ascii=False))

    result = score(
        run,
        list(files),
        encoding=encoding,
        errors=errors,
        streams=streams,
        on_warning=warn,
        on_line=on_line if per_line else None,
        dynamic={"segment": dynamic_segment, "lr": dynamic_lr} if dynamic else None,
    )
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        _evaluate_report(result)


# --- export ------------------------------------------------------------------


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "-o",
    "--out",
    type=click.Path(),
    help="File to write: .safetensors, .onnx or .tflite (the format follows the extension unless "
    "--format is given) [default: add the missing weights files to RUN's checkpoints].",
)
@click.option(
    "--checkpoint",
    default="best",
    show_default=True,
    help="Which weights: best (by validation loss), latest, or a checkpoint path.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["safetensors", "onnx", "tflite", "web"]),
    help="Output format [default: from OUT's extension].",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print what was written as one JSON object on stdout."
)
@click.option(
    "--int8",
    is_flag=True,
    help="Store the weight matrices as int8 with a float scale per output channel (about a "
    "quarter of the size), if the model loses at most --int8-tolerance bits/char.",
)
@click.option(
    "--int8-tolerance",
    type=click.FloatRange(min=0),
    help="Bits per character the int8 model may lose against the float one on the check text "
    "[default: 0.02].",
)
@click.option(
    "--check-text",
    type=click.Path(dir_okay=False),
    help="Text to measure an int8 export on [default: the run's validation split; required for "
    "a .safetensors input]; the first 100,000 characters.",
)
def export(
    run_dir: str,
    out: str | None,
    checkpoint: str,
    fmt: str | None,
    as_json: bool,
    int8: bool,
    int8_tolerance: float | None,
    check_text: str | None,
) -> None:
    """Write a trained model as one portable file, checked against the run first.

    \b
    safetensors  float32 weights + vocabulary and settings (NumPy, PyTorch, JAX, ...)
    onnx         one step (ids, state...) -> (logits, state...), for onnxruntime
    tflite       the same step for LiteRT / TensorFlow Lite, builtin ops only
    web          one HTML page that samples in the browser

    Each file is run before it is kept and must reproduce the logits of the model
    TensorFlow restores from the checkpoint. ONNX and TFLite need
    `pip install 'charrnn-lab[export]'`. Without -o: add the weights.safetensors file to
    every kept checkpoint of RUN that lacks one (runs trained by an older charrnn),
    so `charrnn sample` starts without waiting for TensorFlow.

    --int8 (any format): the file must hold the dequantized model, and that model's bits
    per character on the check text must be within --int8-tolerance of the float model's,
    or nothing is written.

    \b
    charrnn export runs/shakespeare -o shakespeare.safetensors
    charrnn export runs/shakespeare -o shakespeare.onnx --checkpoint latest
    charrnn export runs/shakespeare -o shakespeare.onnx --int8
    """
    backend.one_blas_thread()  # first: the check steps NumPy at batch 1
    from charrnn.export import formats as exporting

    if (int8_tolerance is not None or check_text) and not int8:
        raise click.UsageError("--int8-tolerance and --check-text go with --int8")
    if int8 and not out:
        raise click.UsageError("--int8 needs -o OUT")
    if not out:
        result = exporting.add_weights(run_dir, on_info=None if as_json else info)
        if as_json:
            import json

            click.echo(json.dumps(result, ensure_ascii=False))
        elif not result["added"]:
            info(f"Every checkpoint of {run_dir} has its weights file already")
        return
    result = api.export_model(
        run_dir,
        out,
        checkpoint,
        fmt,
        int8=int8,
        int8_tolerance=int8_tolerance,
        check_text=check_text,
    )
    _export_report(result, as_json)


def _export_report(result: dict, as_json: bool) -> None:
    if as_json:
        import json

        click.echo(json.dumps(result, ensure_ascii=False))
    elif result.get("int8"):
        info(
            f"Wrote {result['out']} ({result['format']} int8, {api.human_size(result['bytes'])}, "
            f"{result['bytes'] / result['float_bytes']:.0%} of float); "
            f"{result['bits_per_char']:.4f} bits/char on the check text, float "
            f"{result['float_bits_per_char']:.4f}"
        )
    else:
        check = result.get("check")
        checked = (
            (
                f"; reproduces the model over {check['steps']} steps (largest logit error "
                f"{check['max_abs_error']:.2g})"
            )
            if check
            else ""
        )
        size = api.human_size(result["bytes"])
        info(f"Wrote {result['out']} ({result['format']}, {size}){checked}")


# --- visualize ---------------------------------------------------------------


def _units(value):
    try:
        return tuple(int(u) for u in value.replace(",", " ").split()) if value else ()
    except ValueError:
        raise click.BadParameter("give unit numbers, e.g. 12,300") from None


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("text_file", type=click.Path(allow_dash=True), metavar="TEXT")
@click.option(
    "-o",
    "--out",
    type=click.Path(),
    help="File to write [default: visualize.html; with --json, standard output].",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    help="Use only the first N characters of the text (0: all).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Write the page's data as one JSON object instead of the page (to -o, or stdout).",
)
@click.option(
    "--checkpoint",
    default="best",
    show_default=True,
    help="Which weights: best (by validation loss), latest, or a checkpoint path.",
)
@click.option(
    "--units",
    metavar="N,N,...",
    help="Also store these units' activations (numbers as shown on the page) when the page keeps "
    "only the top-ranked ones.",
)
@click.option(
    "--all-units", is_flag=True, help="Store every unit's activations, however large the page gets."
)
@click.option("--encoding", help="Decode the text with this codec instead of detecting it.")
def visualize(
    run_dir: str,
    text_file: str,
    out: str | None,
    max_chars: int,
    as_json: bool,
    checkpoint: str,
    units: str | None,
    all_units: bool,
    encoding: str | None,
) -> None:
    """Write one self-contained HTML page showing how surprised the model is at every
    character of TEXT (- for stdin), and which cells track quotes, brackets, lines...

    Open the page in any browser (it works from file://, fetches nothing).

    \b
    charrnn visualize runs/shakespeare data/shakespeare.txt -o shakespeare.html
    charrnn visualize runs/linux kernel.c --json > kernel.json
    """
    backend.one_blas_thread()  # first: the model reads the text step by step
    import json

    from charrnn.atomic import write_text_atomic
    from charrnn.text import read_text

    if out is None and not as_json:
        out = "visualize.html"
    model = api.load(run_dir, checkpoint)
    text, _ = read_text(
        text_file, encoding=encoding, newlines=model.loaded.newlines, on_warning=warn
    )
    page = model.visualize(text, max_chars=max_chars, units=_units(units), all_units=all_units)
    body = json.dumps(page.data, ensure_ascii=False) if as_json else page.html
    if out is None:
        click.echo(body)
    else:
        write_text_atomic(out, body)
        info(f"Wrote {out} ({api.human_size(len(body.encode('utf-8')))})")
