"""charrnn from Python: ``prepare`` a corpus, ``train`` a run, ``load`` a model and ask it
for text, scores, a page or a file.  The command line is a layer over these calls
(charrnn.cli), so a call and the command it mirrors run the same code and give the same
result: the same seed and options give the same text as ``charrnn sample``, the same
text the same figures as ``charrnn evaluate``.

    >>> import charrnn, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> ds = charrnn.prepare("data/shakespeare.txt", out=f"{tmp}/plays")
    >>> ds
    Dataset('.../plays', vocabulary 75, 472,069 symbols of text)
    >>> result = charrnn.train(
    ...     "quick",
    ...     data=ds.path,
    ...     out=f"{tmp}/run",
    ...     overrides={"train.max_steps": 30, "model.rnn_size": 32, "train.max_time": None},
    ...     progress=False,
    ... )
    >>> result.status, result.step
    ('done', 30)
    >>> model = result.load()
    >>> model
    Model('.../run', lstm 2x32, 75 symbols, step 30, val loss ... nats/symbol)
    >>> text = model.generate("ROMEO:", n=40, seed=1)
    >>> text.startswith("ROMEO:"), len(text)
    (True, 46)
    >>> text == model.generate("ROMEO:", n=40, seed=1)
    True
    >>> "".join(model.stream("ROMEO:", n=40, seed=1)) == text
    True
    >>> model.score("To be, or not to be")["total"]["bits_per_char"] > 0
    True

Library calls print nothing on stdout.  Messages for people go to the ``charrnn``
logger (progress and notes at INFO; warnings at WARNING, each also a
:class:`CharrnnWarning`); errors are :class:`CharrnnError`, with the command line's
messages.  TensorFlow is imported by the calls that need it (training, scoring, a Keras
model), never by ``import charrnn``.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from charrnn.errors import CharrnnError, CharrnnWarning

if TYPE_CHECKING:
    import keras

    from charrnn.atomic import StrPath
    from charrnn.generate.write import Request
    from charrnn.store.dataset import Dataset
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

__all__ = [
    "CharrnnError",
    "CharrnnWarning",
    "Model",
    "Page",
    "TrainResult",
    "load",
    "prepare",
    "train",
]

logger = logging.getLogger("charrnn")
logger.addHandler(logging.NullHandler())  # a library's: shown once the user configures logging

F = TypeVar("F", bound=Callable[..., Any])


# --- messages: one path for a library call and a command -------------------------------


def info(message: str) -> None:
    """A line for people: an INFO record on the ``charrnn`` logger."""
    logger.info(message)


def warn(message: str) -> None:
    """A warning: a WARNING record on the ``charrnn`` logger and a :class:`CharrnnWarning`
    pointing at the caller's line (the command line shows the record, not both)."""
    logger.warning(message)
    warnings.warn(message, CharrnnWarning, stacklevel=_outside_charrnn())


def _outside_charrnn() -> int:
    """The ``stacklevel`` of the first frame outside the charrnn package."""
    here, frame, level = str(Path(__file__).parent), sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def _log_line(line: str) -> None:
    """Training's lines, which mark their warnings ``Warning: ``."""
    if line.startswith("Warning: "):
        warn(line.removeprefix("Warning: "))
    else:
        info(line)


def _options(fn: F) -> F:
    """A misspelt keyword is a CharrnnError (and a TypeError, as Python's own would be)
    naming the nearest option, as the command line names the nearest flag."""
    code = fn.__code__  # (inspect.signature would cost `import charrnn` ~10 ms)
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    names = [p for p in names if p != "self"]

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for key in kwargs:
            if key not in names:
                import difflib

                near = difflib.get_close_matches(key, names, 1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise OptionError(
                    f"{fn.__name__}() has no option {key!r}{hint} (options: {', '.join(names)})"
                )
        return fn(*args, **kwargs)

    return checked  # type: ignore[return-value]


class OptionError(CharrnnError, TypeError):
    """An option a call does not have."""


# --- prepare -------------------------------------------------------------------------


@_options
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


# --- train ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """How a ``train`` call ended: ``status`` is "done", "interrupted" (Ctrl-C or the
    kernel's interrupt: a checkpoint was saved; ``train(..., resume=True)`` continues
    exactly) or "nothing-to-do" (the run was already at its limit)."""

    out: str  # the run directory
    status: str
    step: int
    val_loss: float | None = None  # nats per symbol at the last evaluation of this call
    best_val_loss: float | None = None
    seconds: float | None = None  # the run's clock, across resumes
    signal: int | None = None  # the signal that interrupted it (2: SIGINT)

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    def load(self, checkpoint: StrPath = "best") -> Model:
        """The run's model (:func:`load`)."""
        return load(self.out, checkpoint)


@_options
def train(
    config: StrPath | None = None,
    *,
    data: StrPath | None = None,
    out: StrPath | None = None,
    max_time: str | float | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    init_from: StrPath | None = None,
    force: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a model as ``charrnn train`` does, into the same run directory.

    ``config``: a YAML file or a shipped config's name (``"quick"``, ``"shakespeare"``,
    ...); ``data``, ``out`` and ``max_time`` (seconds, or ``"90s"``, ``"2h"``) as the
    flags of the same names; ``overrides``: ``{"section.key": value}`` for any setting
    (``{"model.cell": "gru", "train.batch_size": 32}``; a string is read as ``--set``
    reads it), checked by the settings' declarations (docs/settings.md).  ``resume``
    continues the run in ``out`` exactly; ``init_from`` starts from another run's
    weights; ``force`` replaces the run in ``out``.

    ``progress``: one bar updated in place (a widget in Jupyter when ipywidgets is
    installed, else text on stderr; none when stderr is neither a notebook's nor a
    terminal); the lines ``charrnn train`` prints are logged at INFO.  Interrupting
    (Ctrl-C, or the kernel's interrupt in Jupyter) finishes the step, saves a checkpoint
    and returns with ``status == "interrupted"``.

    Training sets process-wide TensorFlow state; what stays set afterwards is listed in
    docs/python.md ("Training in a long-lived process").  A run that another process
    (or call) is training is refused, as the command line refuses it.
    """
    from charrnn.training import config as configmod

    flags = {"data": data, "train.out": out, "train.max_time": max_time}
    cfg = configmod.resolve(
        None if config is None else os.fspath(config),
        flags=flags,
        overrides=overrides,
        resume=resume,
    )
    return train_resolved(cfg, resume=resume, init_from=init_from, force=force, progress=progress)


def train_resolved(
    config: dict,
    *,
    resume: bool = False,
    init_from: StrPath | None = None,
    force: bool = False,
    progress: bool = True,
    lines_above_bar: bool = False,
) -> TrainResult:
    """:func:`train` for a config already resolved (charrnn.training.config.resolve), as
    the command line resolves it from its flags; ``lines_above_bar``: write the
    evaluations' lines above the bar (a terminal's way) rather than to the logger."""
    from charrnn.training import loop

    with _process_state():
        result = loop.train(
            config,
            resume=resume,
            init_from=init_from,
            force=force,
            log=_log_line,
            # a bar where one updates in place: a notebook, a terminal (not a log file)
            bar=_make_bar if progress and (_in_kernel() or sys.stderr.isatty()) else None,
            lines_above_bar=lines_above_bar,
        )
    return TrainResult(
        result.out,
        result.status,
        result.step,
        result.val_loss,
        result.best_val_loss,
        (result.timing or {}).get("clock"),
        result.signal,
    )


def _make_bar(total: int | None, initial: int) -> Any:
    """The training bar: tqdm's widget in a Jupyter kernel with ipywidgets (what
    tqdm.auto picks), else a text bar on stderr -- also in a kernel without ipywidgets,
    where tqdm.auto would warn first."""
    import importlib.util

    options = dict(total=total, initial=initial, unit="step", leave=True)
    if _in_kernel() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_bar

        return notebook_bar(**options)
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, **options)


def _in_kernel() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _process_state:  # noqa: N801  (a context manager)
    """Python's and NumPy's global random states, which ``train.seed`` reseeds, are
    given back afterwards; the rest of what training sets for the process is documented
    (docs/python.md)."""

    def __enter__(self) -> None:
        import random

        import numpy as np

        self.saved = random.getstate(), np.random.get_state()

    def __exit__(self, *exc: object) -> None:
        import random

        import numpy as np

        random.setstate(self.saved[0])
        np.random.set_state(self.saved[1])


# --- load, and what a model does -------------------------------------------------------


@_options
def load(path: StrPath, checkpoint: StrPath = "best") -> Model:
    """The model of a run directory or a ``.safetensors`` file.

    ``checkpoint``: "best" (by validation loss), "latest", or a checkpoint's path; a
    damaged one is passed over for the newest intact one with a warning.  Reads no
    TensorFlow for a file or a run with weights files (``charrnn export RUN``).
    """
    from charrnn.store.loader import load as load_model

    return Model(load_model(path, checkpoint, on_warning=warn, on_note=info), checkpoint)


class Model:
    """A trained model: ``generate``, ``generate_many``, ``stream``, ``score``,
    ``visualize``, ``export``.  Made by :func:`load`."""

    def __init__(self, loaded: LoadedModel, checkpoint: StrPath = "best") -> None:
        self.loaded = loaded  # the charrnn.store.loaded.LoadedModel underneath
        self._checkpoint = checkpoint

    # --- what it is ---
    @property
    def path(self) -> str:
        return self.loaded.path

    @property
    def cell(self) -> str:
        return self.loaded.cell

    @property
    def num_layers(self) -> int:
        return self.loaded.model_args["num_layers"]

    @property
    def rnn_size(self) -> int:
        return self.loaded.model_args["rnn_size"]

    @property
    def vocab(self) -> Vocab:
        return self.loaded.vocab

    @property
    def step(self) -> int:
        return self.loaded.step

    @property
    def val_loss(self) -> float | None:
        """Validation loss of the checkpoint, nats per symbol (None: not recorded)."""
        return self.loaded.val_loss

    @property
    def keras(self) -> keras.Model:
        """The Keras model (imports TensorFlow)."""
        return self.loaded.model

    def __repr__(self) -> str:
        loss = "no val loss" if self.val_loss is None else f"val loss {self.val_loss:.4f}"
        jamo = ", jamo" if self.vocab.jamo else ""
        return (
            f"Model({self.path!r}, {self.cell} {self.num_layers}x{self.rnn_size}, "
            f"{len(self.vocab)} symbols{jamo}, step {self.step}, {loss} nats/symbol)"
        )

    # --- text out ---
    @_options
    def generate(
        self,
        prime: str = "",
        n: int = 200,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | None = None,
        allow: str | None = None,
        require: str | None = None,
        require_tries: int = 16,
        beam: int = 0,
        echo_prime: bool = True,
        unknown: str = "error",
    ) -> str:
        """``n`` characters after ``prime`` (which starts the text unless ``echo_prime``
        is False), as ``charrnn sample`` writes them with the same options: ``--seed``,
        ``-t``, ``--top-k``, ``--top-p``, ``--stop`` (the text ends just after it),
        ``--allow``, ``--require``, ``--beam``, ``--unknown``.  ``seed`` None: a fresh
        one, logged at INFO so the text can be made again."""
        return self.generate_many(
            prime,
            n,
            num_samples=1,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop=stop,
            allow=allow,
            require=require,
            require_tries=require_tries,
            beam=beam,
            echo_prime=echo_prime,
            unknown=unknown,
        )[0]

    @_options
    def generate_many(
        self,
        prime: str | Sequence[str] = "",
        n: int = 200,
        *,
        num_samples: int = 1,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | None = None,
        allow: str | None = None,
        require: str | None = None,
        require_tries: int = 16,
        beam: int = 0,
        echo_prime: bool = True,
        unknown: str = "error",
    ) -> list[str]:
        """``num_samples`` texts per prime, generated as one batch per prime, prime by
        prime: text ``i * num_samples + j`` is sample ``j`` of ``charrnn sample --prime
        PRIMES[i] --num-samples NUM_SAMPLES --seed SEED`` (the same prime, seed, count and
        sample index give the same text)."""
        primes = [prime] if isinstance(prime, str) else list(prime)
        seed = _seed(seed)
        texts = []
        for p in primes:
            request = make_request(
                p, n, num_samples, temperature, top_k, top_p, seed, stop, allow, require,
                require_tries, beam, echo_prime, unknown,
            )  # fmt: skip
            texts += _run_samples(self.loaded, request)
        return texts

    @_options
    def stream(
        self,
        prime: str = "",
        n: int = 200,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | None = None,
        allow: str | None = None,
        echo_prime: bool = True,
        unknown: str = "error",
        beam: int = 0,
        require: str | None = None,
    ) -> Iterator[str]:
        """:meth:`generate`'s text in pieces, as they are generated (the prime first);
        the pieces join to ``generate``'s text.  ``beam`` and ``require`` know their text
        only at the end, so they are ``generate``'s alone (an error here)."""
        if beam or require:
            raise CharrnnError(
                f"stream() gives text as it is generated, but {'beam' if beam else 'require'} "
                "knows its text only at the end; use generate() for it"
            )
        request = make_request(
            prime, n, 1, temperature, top_k, top_p, _seed(seed), stop, allow, None, 16, 0,
            echo_prime, unknown,
        )  # fmt: skip
        request.check()  # errors at the call, not at the first next()
        self.vocab.encode(prime, unknown=unknown)  # a prime outside the vocabulary too
        return _stream(self.loaded, request)

    # --- scores, pages, files ---
    @_options
    def score(self, text: str, *, per_line: bool = False, name: str = "<text>") -> dict:
        """What ``charrnn evaluate --json`` reports of ``text``: ``total`` (bits per
        character, per symbol, ...), ``files`` (the one text, called ``name``) and how it
        was scored; with ``per_line``, also ``lines``: ``--per-line``'s records."""
        from charrnn.analysis.evaluate import Text, evaluate

        lines: list[dict] = []
        result = evaluate(
            self.loaded,
            [Text(name, text)],
            on_warning=warn,
            on_line=lines.append if per_line else None,
        )
        if per_line:
            result["lines"] = lines
        return result

    @_options
    def visualize(
        self,
        text: str,
        *,
        max_chars: int = 5000,
        units: Sequence[int] = (),
        all_units: bool = False,
    ) -> Page:
        """The page ``charrnn visualize`` writes for ``text``: how surprised the model is
        at each character and what its cells track.  Shown inline in Jupyter."""
        from charrnn.analysis.visualize import analyse, page_title, visualize_page
        from charrnn.text import normalise_newlines

        name = Path(self.path).resolve().name
        data = analyse(
            self.loaded,
            normalise_newlines(text, self.loaded.newlines),
            max_chars=max_chars,
            units=units,
            all_units=all_units,
            run_name=name,
            on_info=info,
            on_warning=warn,
        )
        return Page(visualize_page(data, page_title(name)), data)

    @_options
    def export(self, path: StrPath, *, format: str | None = None) -> dict:  # noqa: A002
        """Write the model to ``path`` as ``charrnn export`` does (the format from the
        extension: .safetensors, .onnx, .tflite, .html; ``format`` to name it), checked
        against this model before it is renamed into place; returns what was written."""
        from charrnn.export.formats import export

        return export(self.path, path, checkpoint=self._checkpoint, fmt=format, on_warning=warn)


def _seed(seed: int | None) -> int:
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
        info(f"seed {seed}")
    return seed


def make_request(
    prime: str,
    n: int,
    num_samples: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    stop: str | None,
    allow: str | None,
    require: str | None,
    require_tries: int,
    beam: int,
    echo_prime: bool,
    unknown: str,
) -> Request:
    """``charrnn sample``'s options as the generator's Request (the one mapping)."""
    from charrnn.generate.choice import Options
    from charrnn.generate.write import Request

    return Request(
        prime,
        n,
        num_samples,
        Options(temperature, top_k, top_p, seed),
        stop or None,
        allow or None,
        require,
        require_tries,
        beam,
        echo_prime,
        unknown,
    )


def _run_samples(loaded: LoadedModel, request: Request) -> list[str]:
    """``request``'s sample texts, whole."""
    from charrnn.generate.write import pieces

    gen = pieces(loaded, request, on_warning=warn)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _stream(loaded: LoadedModel, request: Request) -> Iterator[str]:
    from charrnn.generate.write import pieces

    for _, piece in pieces(loaded, request, on_warning=warn):
        if piece:
            yield piece


class Page:
    """A visualize page: ``html`` (the whole page), ``data`` (what it shows, as
    ``--json`` writes it), ``save(path)``; shown inline in Jupyter as an ``<iframe
    srcdoc>`` (notebook front ends strip scripts from untrusted output otherwise)."""

    def __init__(self, page: str, data: dict) -> None:
        self.html, self.data = page, data

    def save(self, path: StrPath) -> None:
        from charrnn.atomic import write_text_atomic

        write_text_atomic(path, self.html)

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            'style="width: 100%; height: 640px; border: 1px solid #ddd" '
            'sandbox="allow-scripts"></iframe>'
        )

    def __repr__(self) -> str:
        shown, run = len(self.data["text"]), self.data["run"]
        return f"<charrnn visualize page of {run}: {shown:,} characters, {len(self.html):,} bytes>"
