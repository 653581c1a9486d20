"""Command-line interface: parsing and printing only; the work is in the library modules.

stdout carries data (samples, dumps, --json); everything for humans goes to stderr.
"""

import os
import sys

import click

from charrnn import __version__, backend
from charrnn.errors import CharrnnError
from charrnn.train.distribute import STRATEGIES


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharrnnError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:
            # `charrnn sample | head`: the reader went away, which is not an error.
            # (Click itself would turn it into exit status 1.)  Point stdout at
            # /dev/null so the interpreter's final flush stays quiet.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            ctx.exit(0)


def info(message: str = "", **kwargs) -> None:
    """A line for humans: always stderr."""
    click.echo(message, err=True, **kwargs)


def warn(message: str) -> None:
    info(f"Warning: {message}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="charrnn")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow's own log messages and extra detail.")
def cli(verbose):
    """Train character-level LSTM/GRU language models and sample text from them.

    \b
    charrnn prepare corpus.txt -o data/corpus
    charrnn train --config quick.yaml --data data/corpus
    charrnn sample --prime "/* "
    """
    backend.set_verbose(verbose)


# --- prepare / dump ----------------------------------------------------------

def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _prepare_summary(s: dict) -> None:
    for i in s["inputs"]:
        conf = "given by --encoding" if i["confidence"] is None else f"confidence {i['confidence']:.2f}"
        name = "standard input" if i["path"] == "-" else i["path"]
        info(f"Read {name}: {_size(i['bytes'])}, {i['encoding']} ({conf})")
    jamo = "on" if s["jamo"]["applied"] else "off"
    unk = f", {s['unk_replaced']:,} rare symbols -> unknown" if s["unk_replaced"] else ""
    base = s.get("vocab_from")
    base = f" ({base['symbols']} from {base['path']}, {base['added']} new)" if base else ""
    info(f"{s['chars']:,} characters -> {s['symbols']:,} symbols (jamo {jamo}, "
         f"newlines {s['newlines']}); vocabulary {s['vocab_size']} symbols{base}{unk}")
    if s["jamo"].get("why"):
        info(f"jamo {jamo} (auto): {s['jamo']['why']}")
    sp = s["splits"]
    info("Split (contiguous): " + ", ".join(f"{k} {sp[k]['symbols']:,}" for k in sp) + " symbols")
    info(f"Wrote {s['out']} ({s['dtype']})")


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--out", type=click.Path(), help="Dataset directory to write [default: data/<input name>, data/stdin for -].")
@click.option("--include", multiple=True, metavar="GLOB", help="For directory inputs: only files whose name or relative path matches (repeatable, e.g. --include '*.c' --include '*.h'); files are taken in sorted order.")
@click.option("--encoding", help="Decode every input with this codec instead of detecting it (e.g. utf-8, cp949, utf-16).")
@click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True, help="Undecodable bytes: stop with an error naming the offset, or replace them with U+FFFD.")
@click.option("--keep-newlines", is_flag=True, help="Keep CRLF and lone CR as they are (by default both become LF).")
@click.option("--jamo", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True, help="Split Hangul syllables into conjoining jamo (lossless; a much smaller vocabulary). auto: on when syllables are at least 10% of the characters, except for mostly-Hangul text of few distinct syllables, where whole syllables train better (the summary says which and why; see README).")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True, help="Map symbols seen fewer times to one unknown symbol (U+FFFD).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True, help="Share of the characters for validation: the contiguous part after train.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="Share of the characters for test: the contiguous tail.")
@click.option("--force", is_flag=True, help="Replace an existing dataset directory (only once the new one is complete).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr (warnings still show).")
@click.option("--vocab-from", type=click.Path(), metavar="RUN", help="Keep this run's vocabulary with its ids and add the new text's other characters after them, so `train --init-from RUN` keeps the old alphabet; jamo and newline policy follow the run.")
def prepare(inputs, out, include, encoding, errors, keep_newlines, jamo, min_count, val_fraction,
            test_fraction, force, as_json, quiet, vocab_from):
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
        inputs, out, include=include, encoding=encoding, errors=errors,
        newlines="keep" if keep_newlines else "lf", jamo=jamo, min_count=min_count,
        val_fraction=val_fraction, test_fraction=test_fraction, force=force,
        progress=not quiet and sys.stderr.isatty(), on_warning=warn, vocab_from=vocab_from)
    if not quiet:
        _prepare_summary(summary)
    if as_json:
        import json

        click.echo(json.dumps(summary, ensure_ascii=False))


@cli.command()
@click.argument("data_dir", type=click.Path())
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="all", show_default=True, help="Which part to write; all = train, val, test in order.")
def dump(data_dir, split):
    """Write a dataset's stored text to stdout exactly (UTF-8, Hangul recomposed)."""
    from charrnn.store.dataset import iter_dump, load_dataset

    out = sys.stdout.buffer
    for text in iter_dump(load_dataset(data_dir), split):
        out.write(text.encode("utf-8", "surrogatepass"))
    out.flush()


# --- train -------------------------------------------------------------------


@cli.command()
@click.option("-c", "--config", "config_name", metavar="NAME|PATH", help="YAML config: a file, or a shipped config (linux, shakespeare, korean, quick; .yaml optional).")
@click.option("--data", type=click.Path(), help="Prepared dataset directory (sets data).")
@click.option("-o", "--out", type=click.Path(), help="Run directory to write (sets train.out).")
@click.option("--max-time", metavar="DURATION", help="Train for this long, counted across --resume: seconds or e.g. 90s, 10m, 2h. The run times its first steps and plans its step count (where the LR schedule ends) to fit (sets train.max_time).")
@click.option("--model-size", type=click.Choice(["auto"]), help="auto: choose the layers, units, embedding and dropout for --max-time from the data and this machine's speed; printed, stored in model.json, kept on --resume (sets model.size; in YAML `model: auto`).")
@click.option("--max-steps", type=int, help="Stop at this global step (sets train.max_steps).")
@click.option("--max-epochs", type=int, help="Stop after this many epochs (sets train.max_epochs).")
@click.option("--seed", type=int, help="Random seed for the initial weights and dropout (sets train.seed).")
@click.option("--logdir", type=click.Path(), help="TensorBoard log directory [default: <out>/logs] (sets train.logdir).")
@click.option("--strategy", type=click.Choice(STRATEGIES), help="tf.distribute strategy: auto (multiworker when TF_CONFIG names a cluster, mirrored with >1 GPU, else default), default (one device), mirrored (all GPUs here), multiworker (sets train.strategy).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint (its config.yaml is the base config).")
@click.option("--init-from", type=click.Path(), metavar="RUN", help="Start from the weights of another run (same architecture, jamo scheme and newline policy); weights are mapped by symbol, so the vocabulary may differ (see prepare --vocab-from); optimizer and step start fresh.")
@click.option("--force", is_flag=True, help="Start over: delete the run already in --out (its checkpoints, metrics and logs) and train a new one.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override any config value, e.g. --set train.batch_size=32 --set model.cell=gru (repeatable).")
@click.pass_context
def train(ctx, config_name, data, out, max_time, model_size, max_steps, max_epochs, seed, logdir,
          strategy, resume, init_from, force, sets):
    """Train a model on a prepared dataset; checkpoints, metrics and logs go to the run directory.

    \b
    charrnn train --config quick.yaml
    charrnn train --config linux.yaml --data data/linux --max-time 2h
    charrnn train --data data/mytext --max-time 30m --model-size auto
    charrnn train --resume --out runs/linux
    """
    from charrnn.train import config as configmod
    from charrnn.train import loop as trainmod

    if resume and (init_from or force):
        raise click.UsageError(f"--resume and {'--init-from' if init_from else '--force'} "
                               "exclude each other")
    flags = {"data": data, "train.out": out, "train.max_time": max_time, "model.size": model_size,
             "train.max_steps": max_steps, "train.max_epochs": max_epochs, "train.seed": seed,
             "train.logdir": logdir, "train.strategy": strategy}
    cfg = configmod.resolve(config_name, sets, flags, resume)
    result = trainmod.train(cfg, resume=resume, init_from=init_from, force=force, log=info)
    if result.status == "interrupted":
        ctx.exit(128 + (result.signal or 2))


# --- sample / evaluate -------------------------------------------------------

def _run_dir(run_dir):
    if run_dir:
        return run_dir
    from charrnn.store.rundir import find_latest_run

    run_dir = find_latest_run("runs")
    info(f"Using the most recent run: {run_dir}")
    return run_dir


@cli.command()
@click.argument("run_dir", required=False, type=click.Path())
@click.option("-n", "--length", type=click.IntRange(min=0), default=1000, show_default=True, help="Characters to generate per sample, counted in original characters (a Hangul syllable is one, not its jamo); the prime is not counted.")
@click.option("--prime", default="", help="Text to start from: fed through the model to set its state, then echoed.")
@click.option("--prime-file", type=click.Path(allow_dash=True), help="Read the prime from this file (- for stdin), decoded like `charrnn prepare` does.")
@click.option("-t", "--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Sharpness: below 1 safer, above 1 wilder; 0 always takes the most likely symbol (greedy).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True, help="Sample only among the K most likely symbols (0: all).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True, help="Nucleus sampling: only among the most likely symbols that together hold this much probability (1: all).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed: the same seed and options give the same text [default: a fresh one, shown with -v].")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True, help="Generate N samples as one batch; each is printed whole, separated by --separator.")
@click.option("--separator", default=None, help="Text between samples with --num-samples [default: a blank line, 16 dashes, a blank line].")
@click.option("--stop", help="End a sample just after this string appears in the generated text (it is printed).")
@click.option("--allow", help="Only these characters may be generated (a mask on the model's choices; with jamo, whole syllables). The prime is not checked.")
@click.option("--require", help="Each sample must contain this string in its generated text: samples that do not are drawn again (rejection, up to --require-tries per sample); the samples come whole, at the end.")
@click.option("--require-tries", type=click.IntRange(min=1), default=16, show_default=True, help="With --require: candidates drawn per sample before giving up with an error.")
@click.option("--beam", type=click.IntRange(min=0), default=0, show_default=True, help="Beam search of this width for the most probable text of -n characters (never less probable than greedy's); ignores -t, --top-k, --top-p and --seed. 0: sample.")
@click.option("--novelty", is_flag=True, help="After each sample, say on stderr the longest substring it shares with the run's training text (and where), and how much of it lies in shared runs of 20+ characters.")
@click.option("--checkpoint", default="best", show_default=True, help="Which weights: best (by validation loss), latest, or a checkpoint path.")
@click.option("--no-prime-echo", is_flag=True, help="Do not print the prime before the generated text.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error", show_default=True, help="Prime characters the model never saw: stop with an error naming them, or leave them out.")
@click.option("--encoding", help="Encoding of --prime-file (default: detected).")
@click.option("-i", "--interactive", is_flag=True, help="Write together with the model in the terminal: type text, let it write (Tab: -n characters, default 40; Ctrl-N: a line), see its top next symbols; the final text goes to stdout.")
def sample(run_dir, length, prime, prime_file, temperature, top_k, top_p, seed, num_samples,
           separator, stop, allow, require, require_tries, beam, novelty, checkpoint,
           no_prime_echo, unknown, encoding, interactive):
    """Generate text from a trained run (default: the most recent under ./runs).

    Only the text goes to stdout, streamed as it is generated; Hangul jamo runs
    print whole syllables. Same --seed and options, same text.

    \b
    charrnn sample --prime "/* " -n 2000
    charrnn sample runs/shakespeare -t 0.7 --top-p 0.9 --seed 1 --stop $'\\n\\n'
    charrnn sample --num-samples 4 -n 200 | less
    charrnn sample --beam 5 -n 80 --prime "HAMLET:" --allow "$(printf '%s' {a..z} ' .,')"
    """
    backend.one_blas_thread()  # first: NumPy streams while TensorFlow imports alongside
    from charrnn.generate.choice import Options
    from charrnn.generate.write import SEPARATOR, Request, write_samples
    from charrnn.store.loader import load

    if prime and prime_file:
        raise click.UsageError("give --prime or --prime-file, not both")
    run_dir = _run_dir(run_dir)
    loaded = load(run_dir, checkpoint, on_warning=warn, on_note=info)
    if prime_file:
        from charrnn.text import read_text

        prime, _ = read_text(prime_file, encoding=encoding,
                             newlines=loaded.newlines,
                             on_warning=warn)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    if click.get_current_context().find_root().params.get("verbose"):
        info(f"Checkpoint {loaded.checkpoint}; seed {seed}")
    options = Options(temperature, top_k, top_p, seed)
    if interactive:
        _interactive(run_dir, loaded, options, prime, length, num_samples, stop)
        return
    request = Request(prime, length, num_samples, options, stop, allow or None, require,
                      require_tries, beam, not no_prime_echo, unknown)
    index = None
    if novelty:
        from charrnn.analysis.novelty import describe, index_for

        index = index_for(loaded, on_info=info)  # before any text: a missing dataset stops here
    out = sys.stdout
    texts = write_samples(out, loaded, request,
                          separator=SEPARATOR if separator is None else separator, on_warning=warn)
    if out.isatty():
        out.write("\n")  # keep the shell prompt off the last line
        out.flush()
    for i, text in enumerate(texts if index is not None else []):
        info(describe(i, index.report(_generated(loaded, request, text))))


def _generated(loaded, request, text):
    """What a sample generated, without its echoed prime."""
    from charrnn.generate.write import echoed_prime

    return text[len(echoed_prime(loaded.vocab, request)):]


def _interactive(run_dir, loaded, options, prime, length, num_samples, stop):
    from click.core import ParameterSource

    from charrnn.generate import interactive

    if num_samples != 1 or stop:
        raise click.UsageError("-i writes one text: no --num-samples or --stop")
    given = click.get_current_context().get_parameter_source("length") != ParameterSource.DEFAULT
    session = interactive.Session(loaded.weights, loaded.vocab, options,
                                  k=max(1, length) if given else 40)
    if prime and session.type(prime):
        warn("prime characters outside the vocabulary were left out")
    text = interactive.run(session, title=f"charrnn {os.path.basename(os.path.normpath(run_dir))}")
    sys.stdout.write(text + ("\n" if sys.stdout.isatty() else ""))
    sys.stdout.flush()


def _evaluate_report(r: dict) -> None:
    for f in r["files"] + ([dict(r["total"], path="total")] if len(r["files"]) > 1 else []):
        oov = (f" ({f['oov_chars']:,} outside the vocabulary, charged {f['oov_bits']:,.1f} "
               "bits)" if f["oov_chars"] else "")
        line = (f"{f['path']}: {f['chars']:,} chars{oov}, {f['symbols']:,} symbols: "
                f"loss {_num(f['loss_nats'])} nats/symbol, {_num(f['bits_per_symbol'])} "
                f"bits/symbol, {_num(f['bits_per_char'])} bits/char")
        if f["oov_chars"]:
            line += f" ({_num(f['bits_per_char_in_vocab'])} without the outside characters)"
        info(line)


def _num(x):
    return "n/a" if x is None else f"{x:.4f}"


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--checkpoint", default="best", show_default=True, help="Which weights: best (by validation loss), latest, or a checkpoint path.")
@click.option("--encoding", help="Decode the files with this codec instead of detecting it.")
@click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True, help="Undecodable bytes: stop with an error, or replace them with U+FFFD.")
@click.option("--streams", type=click.IntRange(min=1), help="Score each file as this many pieces side by side (faster; each piece after the first reads the 256 symbols before it as unscored warm-up); 1 scores it in one pass [default: one per 1024 symbols, at most 64].")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object on stdout.")
@click.option("--per-line", is_flag=True, help="Print one JSON object per input line on stdout (path, line, text, chars, bits, bits_per_char, the most surprising character); the figures go to stderr.")
@click.option("--dynamic", is_flag=True, help="Dynamic evaluation: read each file in one stream and let the weights adapt (an SGD step on each segment after scoring it, so no character is predicted by weights that saw it); they reset for each file.")
@click.option("--dynamic-lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True, help="With --dynamic: the SGD learning rate per segment (charrnn.analysis.dynamic.LR).")
@click.option("--dynamic-segment", type=click.IntRange(min=1), default=50, show_default=True, help="With --dynamic: symbols scored per weight update (charrnn.analysis.dynamic.SEGMENT).")
def evaluate(run_dir, files, checkpoint, encoding, errors, streams, as_json, per_line, dynamic,
             dynamic_lr, dynamic_segment):
    """Score text files (- for stdin) with a trained run: loss per symbol and per character.

    The text goes through prepare's pipeline (encoding detection, the run's
    newline policy, jamo). Reports nats/symbol, bits/symbol and bits per original
    character (fair between jamo and syllable models); characters outside the
    vocabulary are charged -log2 P(escape) + log2 |class| bits (README: Sampling
    and evaluating) and the figures are also given without them.

    \b
    charrnn evaluate runs/shakespeare held_out.txt
    charrnn evaluate runs/ko-jamo test.txt --json | jq .total.bits_per_char
    charrnn evaluate runs/logs app.log --per-line | jq -s 'sort_by(.bits_per_char) | reverse | .[:10]'
    """
    import json

    from charrnn.analysis.evaluate import evaluate as score
    from charrnn.analysis.evaluate import per_line as lines_of
    from charrnn.store.loader import load

    if as_json and per_line:
        raise click.UsageError("give --json or --per-line, not both")
    if dynamic and streams not in (None, 1):
        raise click.UsageError("--dynamic reads each file in one stream; leave out --streams")
    run = load(run_dir, checkpoint, on_warning=warn)

    def on_file(path, scored):
        for line in lines_of(path, scored):
            click.echo(json.dumps(line, ensure_ascii=False))

    result = score(run, list(files), encoding=encoding, errors=errors, streams=streams,
                   on_warning=warn, on_file=on_file if per_line else None,
                   dynamic={"segment": dynamic_segment, "lr": dynamic_lr} if dynamic else None)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        _evaluate_report(result)


# --- export ------------------------------------------------------------------

@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("-o", "--out", type=click.Path(), help="File to write: .safetensors, .onnx or .tflite (the format follows the extension unless --format is given) [default: add the missing weights files to RUN's checkpoints].")
@click.option("--checkpoint", default="best", show_default=True, help="Which weights: best (by validation loss), latest, or a checkpoint path.")
@click.option("--format", "fmt", type=click.Choice(["safetensors", "onnx", "tflite", "web"]), help="Output format [default: from OUT's extension].")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object on stdout.")
def export(run_dir, out, checkpoint, fmt, as_json):
    """Write a trained model as one portable file, checked against the run first.

    \b
    safetensors  float32 weights + vocabulary and settings (NumPy, PyTorch, JAX, ...)
    onnx         one step (ids, state...) -> (logits, state...), for onnxruntime
    tflite       the same step for LiteRT / TensorFlow Lite, builtin ops only

    Each file is run before it is kept and must reproduce the logits of the model
    TensorFlow restores from the checkpoint. ONNX and TFLite need
    `pip install 'charrnn[export]'`. Without -o: add the weights.safetensors file to
    every kept checkpoint of RUN that lacks one (runs trained by an older charrnn),
    so `charrnn sample` starts without waiting for TensorFlow.

    \b
    charrnn export runs/shakespeare -o shakespeare.safetensors
    charrnn export runs/shakespeare -o shakespeare.onnx --checkpoint latest
    """
    backend.one_blas_thread()  # first: the check steps NumPy at batch 1
    from charrnn.export import formats as exporting

    if not out:
        result = exporting.add_weights(run_dir, on_info=None if as_json else info)
        if as_json:
            import json

            click.echo(json.dumps(result, ensure_ascii=False))
        elif not result["added"]:
            info(f"Every checkpoint of {run_dir} has its weights file already")
        return
    result = exporting.export(run_dir, out, checkpoint=checkpoint, fmt=fmt, on_warning=warn)
    if as_json:
        import json

        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        check = result.get("check")
        checked = (f"; reproduces the model over {check['steps']} steps (largest logit error "
                   f"{check['max_abs_error']:.2g})") if check else ""
        info(f"Wrote {result['out']} ({result['format']}, {_size(result['bytes'])}){checked}")


# --- visualize ---------------------------------------------------------------


def _units(value):
    try:
        return tuple(int(u) for u in value.replace(",", " ").split()) if value else ()
    except ValueError:
        raise click.BadParameter("give unit numbers, e.g. 12,300") from None


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("text_file", type=click.Path(allow_dash=True), metavar="TEXT")
@click.option("-o", "--out", type=click.Path(), help="File to write [default: visualize.html; with --json, standard output].")
@click.option("--max-chars", type=click.IntRange(min=0), default=5000, show_default=True, help="Use only the first N characters of the text (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Write the page's data as one JSON object instead of the page (to -o, or stdout).")
@click.option("--checkpoint", default="best", show_default=True, help="Which weights: best (by validation loss), latest, or a checkpoint path.")
@click.option("--units", metavar="N,N,...", help="Also store these units' activations (numbers as shown on the page) when the page keeps only the top-ranked ones.")
@click.option("--all-units", is_flag=True, help="Store every unit's activations, however large the page gets.")
@click.option("--encoding", help="Decode the text with this codec instead of detecting it.")
def visualize(run_dir, text_file, out, max_chars, as_json, checkpoint, units, all_units, encoding):
    """Write one self-contained HTML page showing how surprised the model is at every
    character of TEXT (- for stdin), and which cells track quotes, brackets, lines...

    Open the page in any browser (it works from file://, fetches nothing).

    \b
    charrnn visualize runs/shakespeare data/shakespeare.txt -o shakespeare.html
    charrnn visualize runs/linux kernel.c --json > kernel.json
    """
    backend.one_blas_thread()  # first: the model reads the text step by step
    from charrnn.analysis.visualize import visualize as make_page

    if out is None and not as_json:
        out = "visualize.html"
    body, _ = make_page(run_dir, text_file, out=out, as_json=as_json, checkpoint=checkpoint,
                        max_chars=max_chars, units=_units(units), all_units=all_units,
                        encoding=encoding, on_info=info, on_warning=warn)
    if out is None:
        click.echo(body)
    else:
        info(f"Wrote {out} ({_size(len(body.encode('utf-8')))})")


@cli.command()
@click.argument("run_dir", required=False, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; the default serves this machine only, 0.0.0.0 every interface (other machines too).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on (0: any free one, said at start).")
@click.option("--checkpoint", default="best", show_default=True, help="Which weights: best, latest, or a checkpoint path; POST /v1/reload loads it again (latest: the newest of a run still training).")
@click.option("--max-streams", type=click.IntRange(min=1), default=16, show_default=True, help="Requests generating at once; more get 503.")
@click.option("--max-chars", type=click.IntRange(min=1), default=10_000, show_default=True, help="Largest n a request may ask for.")
@click.option("--max-body", type=click.IntRange(min=64), default=65_536, show_default=True, help="Largest request body, bytes (413 above).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True, help="Seconds a request may take (504 after).")
def serve(run_dir, host, port, checkpoint, max_streams, max_chars, max_body, timeout):
    """Serve a model (a run directory or .safetensors file) over HTTP/JSON.

    POST /v1/generate takes `charrnn sample`'s options (stream: true for server-sent
    events), POST /v1/score a text; GET /v1/model and /healthz describe it.

    \b
    charrnn serve runs/shakespeare --port 8000
    curl -s localhost:8000/v1/generate -H 'Content-Type: application/json' -d '{"prime": "HAMLET:", "n": 200, "seed": 1}'
    """
    backend.one_blas_thread()  # first: the engine steps models one symbol at a time
    from charrnn.serve.run import serve as run_server

    run_server(_run_dir(run_dir), host=host, port=port, checkpoint=checkpoint,
               max_streams=max_streams, max_chars=max_chars, max_body=max_body, timeout=timeout,
               verbose=bool(click.get_current_context().find_root().params.get("verbose")),
               on_info=info, on_warning=warn)


def main(argv=None) -> int:
    """Console-script entry point; returns the exit status."""
    try:
        return cli.main(args=argv, prog_name="charrnn", standalone_mode=False) or 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        info("Aborted.")
        return 130
    except KeyboardInterrupt:
        info("Interrupted.")
        return 130
