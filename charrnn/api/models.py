"""``charrnn.load`` and the :class:`Model` it returns: text (``charrnn sample``), scores
(``charrnn evaluate``), a page (``charrnn visualize``) and files (``charrnn export``), each
by the same code as its command."""

from __future__ import annotations

import html
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn.api.messages import info, options, warn
from charrnn.errors import CharrnnError

if TYPE_CHECKING:
    import keras

    from charrnn.atomic import StrPath
    from charrnn.generate.write import Request
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab


@options
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
    @options
    def generate(
        self,
        prime: str = "",
        n: int = 200,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        allow: str | None = None,
        require: str | None = None,
        require_tries: int = 16,
        beam: int = 0,
        echo_prime: bool = True,
        unknown: str = "error",
    ) -> str:
        """``n`` characters after ``prime`` (which starts the text unless ``echo_prime``
        is False), as ``charrnn sample`` writes them with the same options: ``--seed``,
        ``-t``, ``--top-k``, ``--top-p``, ``--stop`` (a string or several: the text ends
        just after the first to appear), ``--allow``, ``--require``, ``--beam``,
        ``--unknown``.  ``seed`` None: a fresh one, logged at INFO so the text can be made
        again."""
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

    @options
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
        stop: str | Sequence[str] | None = None,
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

    @options
    def stream(
        self,
        prime: str = "",
        n: int = 200,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
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
    @options
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

    @options
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

    @options
    def export(
        self,
        path: StrPath,
        *,
        format: str | None = None,  # noqa: A002
        int8: bool = False,
        int8_tolerance: float | None = None,
        check_text: StrPath | None = None,
    ) -> dict:
        """Write the model to ``path`` as ``charrnn export`` does (the format from the
        extension: .safetensors, .onnx, .tflite, .html; ``format`` to name it), checked
        against this model before it is renamed into place; returns what was written.
        ``int8``: weight matrices as int8 with a scale per channel, refused when it loses more
        than ``int8_tolerance`` bits per character (default 0.02) on ``check_text`` (default:
        the run's validation split), as ``--int8``, ``--int8-tolerance``, ``--check-text``."""
        return export_model(
            self.path,
            path,
            self._checkpoint,
            format,
            int8=int8,
            int8_tolerance=int8_tolerance,
            check_text=check_text,
        )


def export_model(
    run: StrPath,
    out: StrPath,
    checkpoint: StrPath = "best",
    fmt: str | None = None,
    *,
    int8: bool = False,
    int8_tolerance: float | None = None,
    check_text: StrPath | None = None,
) -> dict:
    """``charrnn export RUN -o OUT``: the one path from the command and Model.export."""
    from charrnn.export import formats

    if (int8_tolerance is not None or check_text) and not int8:
        raise CharrnnError("--int8-tolerance and --check-text go with --int8")
    if not int8:
        return formats.export(run, out, checkpoint=checkpoint, fmt=fmt, on_warning=warn)
    from charrnn.analysis.quality import int8_scorer

    return formats.export(
        run,
        out,
        checkpoint=checkpoint,
        fmt=fmt,
        on_warning=warn,
        int8=True,
        score=int8_scorer(run, check_text, on_warning=warn),
        tolerance=formats.INT8_TOLERANCE if int8_tolerance is None else int8_tolerance,
    )


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
    stop: str | Sequence[str] | None,
    allow: str | None,
    require: str | None,
    require_tries: int,
    beam: int,
    echo_prime: bool,
    unknown: str,
) -> Request:
    """``charrnn sample``'s options as the generator's Request (the one mapping)."""
    from charrnn.generate.choice import Options
    from charrnn.generate.textstream import stop_strings
    from charrnn.generate.write import Request

    return Request(
        prime,
        n,
        num_samples,
        Options(temperature, top_k, top_p, seed),
        stop_strings(stop) or None,
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
