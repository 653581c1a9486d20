"""Text out: a request's samples as they are generated, for `sample`, `-i` and `serve`.

``samples(loaded, request)`` is a generator of ``(sample index, text)`` pieces in the
order they are printed -- sample 0 whole, then sample 1, ... -- of ``None`` where it
only hands back control (a server interleaves many requests so), and of a
charrnn.generate.sampler ``Wait`` where it would otherwise wait on a TensorFlow child
process (its start or its computing: the caller blocks on it, or does other work till
its pipe is readable); its return value is the list of sample texts.  `charrnn
sample` writes the pieces to stdout (``write_samples``); `charrnn serve` streams them.
Either way the same seed and options give the same text.

What can stream: plain sampling, --allow and --stop (one string or several: a sample
ends just after the first of them to appear).  --beam (the best text is known
only at the end) and --require (rejection: a sample is kept only once it contains the
string) come whole, at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO, TypeVar

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.generate.beam import beam_steps
from charrnn.generate.choice import Options
from charrnn.generate.constraints import Allowed
from charrnn.generate.sampler import CHUNK, Sampler, Wait, start_id, step_seconds
from charrnn.generate.textstream import TextStream

if TYPE_CHECKING:
    from charrnn.generate.xla_process import ChildSlots
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

T = TypeVar("T")
# What ``samples`` yields (the module doc): a piece (sample index, text), None (control
# handed back) or a Wait (on a TensorFlow child)
Event = tuple[int, str] | Wait | None

SEPARATOR = "\n\n----------------\n\n"
REQUIRE_TRIES = 16  # --require: candidates per sample before giving up
MAX_ASK = 4 * CHUNK  # most steps one generate (or one part of the prime) asks for


@dataclass(frozen=True)
class Request:
    """What to generate: `charrnn sample`'s options (and serve's request body)."""

    prime: str = ""
    length: int = 1000
    num_samples: int = 1
    options: Options = Options()
    stop: str | tuple[str, ...] | None = None  # one or several: ends just after the first seen
    allow: str | None = None  # only these characters may be emitted
    require: str | None = None  # each sample must contain this (rejection)
    require_tries: int = REQUIRE_TRIES
    beam: int = 0  # beam width; 0: sample
    echo_prime: bool = True
    unknown: str = "error"  # prime characters outside the vocabulary: error or skip

    def check(self) -> None:
        self.options.check()
        if self.unknown not in ("error", "skip"):
            raise CharrnnError("--unknown must be error or skip")
        if self.beam < 0 or self.require_tries < 1 or self.length < 0 or self.num_samples < 1:
            raise CharrnnError(
                "--beam, --length and --require-tries must not be negative, "
                "--num-samples at least 1"
            )
        if self.beam and (self.require or self.num_samples != 1):
            raise CharrnnError(
                "--beam gives the one most probable text: it goes with neither "
                "--require nor --num-samples"
            )
        if self.require == "":
            raise CharrnnError("--require needs a non-empty string")

    @property
    def streams(self) -> bool:
        return not (self.beam or self.require)


def samples(
    loaded: LoadedModel,
    request: Request,
    engine: str = "auto",
    numpy_steps: int | None = None,
    on_warning: Callable[[str], None] | None = None,
    chunk_seconds: float = 0.1,
    children: ChildSlots | None = None,
) -> Generator[Event, None, list[str]]:
    """The generator described in the module doc.  ``children``: a
    charrnn.generate.xla_process.ChildSlots capping the TensorFlow children of all the
    requests it is shared by (a server's); None: no cap."""
    request.check()
    vocab = loaded.vocab
    ids = (
        vocab.encode(request.prime, unknown=request.unknown)
        if request.prime
        else np.zeros(0, np.int32)
    )
    if request.prime and len(ids) == 0 and on_warning:
        on_warning("no character of the prime is in the vocabulary; sampling without a prime")
    allowed = Allowed(vocab, request.allow) if request.allow else None
    if request.beam:
        return (yield from _beam(loaded, request, ids, allowed, chunk_seconds))
    run = dict(
        engine=engine, numpy_steps=numpy_steps, chunk_seconds=chunk_seconds, children=children
    )
    if request.require:
        return (yield from _required(loaded, request, ids, allowed, run))
    return (yield from _sampled(loaded, request, ids, allowed, 0, request.num_samples, run))


def _sampled(
    loaded: LoadedModel,
    request: Request,
    ids: np.ndarray,
    allowed: Allowed | None,
    first_lane: int,
    batch: int,
    run: dict,
) -> Generator[Event, None, list[str]]:
    """Samples first_lane .. first_lane + batch - 1, streamed in order."""
    vocab = loaded.vocab
    sampler = Sampler(
        loaded.weights,
        batch,
        request.options,
        start_id=start_id(vocab),
        engine=run["engine"],
        numpy_steps=run["numpy_steps"],
        first_lane=first_lane,
        allowed=allowed,
        children=run["children"],
    )
    per_char = loaded.symbols_per_char if vocab.jamo else 1.0
    # Will NumPy's share of the steps run out?  Then TensorFlow imports and compiles
    # in a child process from the start (or once the cap has room), on the other core.
    # (The jamo per character is the corpus' average: allow 20% more.)
    if len(ids) + request.length * per_char * (1.2 if vocab.jamo else 1) + 16 > sampler.numpy_steps:
        sampler.start_compiling()
    # The first turns' steps from an estimate of the step's cost (a 64-sample batch of a
    # large model takes far longer a step than one sample); the next from their time.
    first = max(1, int(run["chunk_seconds"] / step_seconds(loaded.weights, batch)))
    try:
        yield from _prime(sampler, ids, run["chunk_seconds"], min(256, first))
        streams = [TextStream(vocab, request.length, request.stop) for _ in range(batch)]
        shown_prime = ""
        if request.echo_prime:
            # The prime goes through each sample's decoder, so a final syllable the model
            # completes (prime "하", model "ᆫ") prints as the one syllable "한".
            for s in streams:
                shown_prime = s.decoder.feed(ids)
        texts, current = [""] * batch, 0
        yield 0, shown_prime
        n = min(32, first)  # a small first chunk: the first characters come at once
        while True:
            # Hand over what the current sample has; move on to the next when it is finished.
            while True:
                piece = streams[current].take()
                texts[current] += piece
                if piece:
                    yield current, piece
                if not streams[current].done or current + 1 == batch:
                    break
                current += 1
                yield current, shown_prime
            if all(s.done for s in streams):
                break
            most_left = max(s.left for s in streams if not s.done)
            ask = max(1, min(n, int(most_left * per_char) + 1))
            chunk = yield from sampler.generating(ask)
            for s, row in zip(streams, chunk):
                s.feed(row)
            n = _next_turn(ask, sampler.work_seconds, run["chunk_seconds"])
            yield None
        return [shown_prime + t for t in texts]
    finally:
        sampler.close()


def _next_turn(steps: int, seconds: float, chunk_seconds: float) -> int:
    """Steps for the next turn, after ``steps`` took ``seconds`` of computing (waits on a
    child left out): about ``chunk_seconds`` each -- smooth streaming at any model size,
    and a server's turns short."""
    return max(1, min(MAX_ASK, int(steps * chunk_seconds / max(seconds, 1e-4))))


def _prime(
    sampler: Sampler, ids: np.ndarray, chunk_seconds: float, n: int
) -> Generator[Wait | None, None, None]:
    """Feed the prime in turns of about ``chunk_seconds`` (a long prime would otherwise be
    one long step), the first of ``n`` ids; the ids are the same however the prime is
    split."""
    i = 0
    while i < len(ids):
        sampler.prime(ids[i : i + n])
        yield from sampler.generating(0)
        i += n
        n = _next_turn(n, sampler.work_seconds, chunk_seconds)
        yield None


def _required(
    loaded: LoadedModel, request: Request, ids: np.ndarray, allowed: Allowed | None, run: dict
) -> Generator[Event, None, list[str]]:
    """--require by rejection: candidates are samples num_samples, num_samples + 1, ...
    (each with its own random numbers), tried in order; the first ones whose generated
    text contains the string are the samples."""
    want, tries = request.num_samples, request.require_tries * request.num_samples
    shown = echoed_prime(loaded.vocab, request)
    kept, lane = [], 0
    while len(kept) < want and lane < tries:
        batch = min(want - len(kept), tries - lane)
        found = yield from _quiet(_sampled(loaded, request, ids, allowed, lane, batch, run))
        kept += [t for t in found if request.require in t[len(shown) :]]
        lane += batch
    if len(kept) < want:
        raise CharrnnError(
            f"only {len(kept)} of {want} sample(s) contained {request.require!r} "
            f"after {tries} tries; raise --require-tries, generate more "
            "characters (-n), or put it in the prime"
        )
    yield from enumerate(kept[:want])
    return kept[:want]


def echoed_prime(vocab: Vocab, request: Request) -> str:
    """The text a sample starts with: the prime as echoed (without a final syllable that
    the model may still complete), or "" with echo off."""
    if not (request.echo_prime and request.prime):
        return ""
    return vocab.stream_decoder().feed(vocab.encode(request.prime, unknown=request.unknown))


def _quiet(gen: Generator[Event, None, T]) -> Generator[Wait | None, None, T]:
    """Run a sample generator handing back control only (its pieces are not for output,
    its Waits are passed on); returns what it returns."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        yield event if isinstance(event, Wait) else None


def _beam(
    loaded: LoadedModel,
    request: Request,
    ids: np.ndarray,
    allowed: Allowed | None,
    chunk_seconds: float,
) -> Generator[Event, None, list[str]]:
    vocab = loaded.vocab
    stream = TextStream(vocab, request.length, request.stop)
    shown_prime = stream.decoder.feed(ids) if request.echo_prime else ""
    yield None
    best = yield from beam_steps(
        loaded.weights,
        stream,
        ids,
        start_id(vocab),
        request.length,
        request.beam,
        allowed,
        chunk_seconds,
    )
    text = shown_prime + best.text
    yield 0, text
    return [text]


def pieces(
    loaded: LoadedModel,
    request: Request,
    engine: str = "auto",
    numpy_steps: int | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Generator[tuple[int, str], None, list[str]]:
    """``samples`` for one caller that waits: only the pieces ``(sample index, text)``,
    blocking on TensorFlow children where it must; returns the sample texts."""
    gen = samples(loaded, request, engine=engine, numpy_steps=numpy_steps, on_warning=on_warning)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, Wait):
            event.block()
        elif event is not None:
            yield event


def write_samples(
    out: TextIO,
    loaded: LoadedModel,
    request: Request,
    separator: str = SEPARATOR,
    engine: str = "auto",
    numpy_steps: int | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> list[str]:
    """Generate the request's samples and write them to the text stream ``out`` as they
    come, each after the first preceded by ``separator``; returns the sample texts."""
    gen = pieces(loaded, request, engine=engine, numpy_steps=numpy_steps, on_warning=on_warning)
    last = 0
    while True:
        try:
            index, piece = next(gen)
        except StopIteration as stop:
            return stop.value
        if index != last:
            out.write(separator)
            last = index
        out.write(piece)
        out.flush()
