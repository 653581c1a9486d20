"""`charrnn sample` (and -i) and `charrnn serve`: text out, to a terminal, a pipe or HTTP."""

import os
import sys

import click

from charrnn import backend
from charrnn.cli.group import cli, info, is_verbose, run_dir_or_latest, warn


@cli.command()
@click.argument("run_dir", required=False, type=click.Path())
@click.option(
    "-n",
    "--length",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Characters to generate per sample, counted in original characters (a Hangul syllable is "
    "one, not its jamo); the prime is not counted.",
)
@click.option(
    "--prime",
    default="",
    help="Text to start from: fed through the model to set its state, then echoed.",
)
@click.option(
    "--prime-file",
    type=click.Path(allow_dash=True),
    help="Read the prime from this file (- for stdin), decoded like `charrnn prepare` does.",
)
@click.option(
    "-t",
    "--temperature",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Sharpness: below 1 safer, above 1 wilder; 0 always takes the most likely symbol "
    "(greedy).",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Sample only among the K most likely symbols (0: all).",
)
@click.option(
    "--top-p",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Nucleus sampling: only among the most likely symbols that together hold this much "
    "probability (1: all).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    help="Random seed: the same seed and options give the same text [default: a fresh one, shown "
    "with -v].",
)
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Generate N samples as one batch; each is printed whole, separated by --separator.",
)
@click.option(
    "--separator",
    default=None,
    help="Text between samples with --num-samples [default: a blank line, 16 dashes, a blank "
    "line].",
)
@click.option(
    "--stop",
    multiple=True,
    help="End a sample just after this string appears in the generated text (it is printed); "
    "repeat for several: the first to appear ends it.",
)
@click.option(
    "--allow",
    help="Only these characters may be generated (a mask on the model's choices; with jamo, whole "
    "syllables). The prime is not checked.",
)
@click.option(
    "--require",
    help="Each sample must contain this string in its generated text: samples that do not are "
    "drawn again (rejection, up to --require-tries per sample); the samples come whole, at "
    "the end.",
)
@click.option(
    "--require-tries",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="With --require: candidates drawn per sample before giving up with an error.",
)
@click.option(
    "--beam",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Beam search of this width for the most probable text of -n characters (never less "
    "probable than greedy's); ignores -t, --top-k, --top-p and --seed. 0: sample.",
)
@click.option(
    "--novelty",
    is_flag=True,
    help="After each sample, say on stderr the longest substring it shares with the run's "
    "training text (and where), and how much of it lies in shared runs of 20+ characters.",
)
@click.option(
    "--checkpoint",
    default="best",
    show_default=True,
    help="Which weights: best (by validation loss), latest, or a checkpoint path.",
)
@click.option(
    "--no-prime-echo", is_flag=True, help="Do not print the prime before the generated text."
)
@click.option(
    "--unknown",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="Prime characters the model never saw: stop with an error naming them, or leave them out.",
)
@click.option("--encoding", help="Encoding of --prime-file (default: detected).")
@click.option(
    "-i",
    "--interactive",
    is_flag=True,
    help="Write together with the model in the terminal: type text, let it write (Tab: -n "
    "characters, default 40; Ctrl-N: a line), see its top next symbols; the final text goes "
    "to stdout.",
)
def sample(
    run_dir: str | None,
    length: int,
    prime: str,
    prime_file: str | None,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    num_samples: int,
    separator: str | None,
    stop: tuple[str, ...],
    allow: str | None,
    require: str | None,
    require_tries: int,
    beam: int,
    novelty: bool,
    checkpoint: str,
    no_prime_echo: bool,
    unknown: str,
    encoding: str | None,
    interactive: bool,
) -> None:
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
    from charrnn import api
    from charrnn.generate.choice import Options
    from charrnn.generate.write import SEPARATOR, write_samples

    if prime and prime_file:
        raise click.UsageError("give --prime or --prime-file, not both")
    run_dir = run_dir_or_latest(run_dir)
    loaded = api.load(run_dir, checkpoint).loaded
    if prime_file:
        from charrnn.text import read_text

        prime, _ = read_text(
            prime_file, encoding=encoding, newlines=loaded.newlines, on_warning=warn
        )
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    if is_verbose():
        info(f"Checkpoint {loaded.checkpoint}; seed {seed}")
    if interactive:
        options = Options(temperature, top_k, top_p, seed)
        _interactive(run_dir, loaded, options, prime, length, num_samples, stop)
        return
    request = api.make_request(
        prime, length, num_samples, temperature, top_k, top_p, seed, stop, allow, require,
        require_tries, beam, not no_prime_echo, unknown,
    )  # fmt: skip
    index = None
    if novelty:
        from charrnn.analysis.novelty import describe, index_for, sample_reports

        index = index_for(loaded, on_info=info)  # before any text: a missing dataset stops here
    out = sys.stdout
    texts = write_samples(
        out,
        loaded,
        request,
        separator=SEPARATOR if separator is None else separator,
        on_warning=warn,
    )
    if out.isatty():
        out.write("\n")  # keep the shell prompt off the last line
        out.flush()
    if index is not None:
        for i, report in enumerate(sample_reports(index, loaded.vocab, request, texts)):
            info(describe(i, report))


def _interactive(run_dir, loaded, options, prime, length, num_samples, stop):
    from click.core import ParameterSource

    from charrnn.generate import interactive

    if num_samples != 1 or stop:
        raise click.UsageError("-i writes one text: no --num-samples or --stop")
    given = click.get_current_context().get_parameter_source("length") != ParameterSource.DEFAULT
    session = interactive.Session(
        loaded.weights, loaded.vocab, options, k=max(1, length) if given else 40
    )
    if prime and session.type(prime):
        warn("prime characters outside the vocabulary were left out")
    text = interactive.run(session, title=f"charrnn {os.path.basename(os.path.normpath(run_dir))}")
    sys.stdout.write(text + ("\n" if sys.stdout.isatty() else ""))
    sys.stdout.flush()


@cli.command()
@click.argument("run_dir", required=False, type=click.Path())
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; the default serves this machine only, 0.0.0.0 every interface "
    "(other machines too).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free one, said at start).",
)
@click.option(
    "--checkpoint",
    default="best",
    show_default=True,
    help="Which weights: best, latest, or a checkpoint path; POST /v1/reload loads it again "
    "(latest: the newest of a run still training).",
)
@click.option(
    "--max-streams",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Requests at once (generating, or scoring one at a time); more get 503. A client that "
    "goes away frees its slot at once.",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Largest n, and longest prime, a request may ask for.",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=64),
    default=65_536,
    show_default=True,
    help="Largest request body, bytes (413 above); also bounds /v1/score's text.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds a request may take, waiting included, beam and score too (504 after; its slot "
    "and memory are freed).",
)
@click.option(
    "--max-children",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="TensorFlow child processes at once: a sample longer than NumPy's share of the steps "
    "hands over to one (each ~800 MB plus 3x the weights, counted in the memory bound); "
    "requests needing one when none is free wait their turn, same text.",
)
@click.option(
    "--api-key",
    envvar="CHARRNN_API_KEY",
    help="Every route but /healthz needs Authorization: Bearer KEY (401 otherwise). "
    "CHARRNN_API_KEY keeps it out of ps.",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(dir_okay=False),
    help="Serve HTTPS with this certificate (PEM; with --ssl-keyfile), so a key does not "
    "cross a network in clear.",
)
@click.option("--ssl-keyfile", type=click.Path(dir_okay=False), help="The certificate's key.")
@click.option(
    "--cors-origin",
    help="Let pages of this one origin (e.g. https://app.example) call the server from a "
    "browser; needs --api-key.",
)
def serve(
    run_dir: str | None,
    host: str,
    port: int,
    checkpoint: str,
    max_streams: int,
    max_chars: int,
    max_body: int,
    timeout: float,
    max_children: int,
    api_key: str | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    cors_origin: str | None,
) -> None:
    """Serve a model (a run directory or .safetensors file) over HTTP/JSON.

    POST /v1/generate takes `charrnn sample`'s options (stream: true for server-sent
    events), POST /v1/score a text; GET /v1/model and /healthz describe it. OpenAI's
    Completions API too: GET /v1/models, POST /v1/completions (a token is a character).

    Limits (GET /v1/model lists them): n and the prime up to --max-chars,
    num_samples, require_tries and beam up to 64 (beam also up to the vocabulary
    size), stop and require up to 256 characters. Requests run in ~20 ms turns, so
    none holds another (nor do the TensorFlow child processes long samples hand over
    to, at most --max-children); memory above the idle server, the children included,
    stays under a bound computed from these limits and the model (said at start and
    by /v1/model).

    \b
    charrnn serve runs/shakespeare --port 8000
    curl -s localhost:8000/v1/generate -H 'Content-Type: application/json' -d '{"prime": "HAMLET:", "n": 200, "seed": 1}'
    """  # noqa: E501
    backend.one_blas_thread()  # first: the engine steps models one symbol at a time
    from charrnn.serve.run import serve as run_server

    run_server(
        run_dir_or_latest(run_dir),
        host=host,
        port=port,
        checkpoint=checkpoint,
        max_streams=max_streams,
        max_chars=max_chars,
        max_body=max_body,
        timeout=timeout,
        max_children=max_children,
        api_key=api_key or None,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        cors_origin=cors_origin,
        verbose=is_verbose(),
        on_info=info,
        on_warning=warn,
    )
